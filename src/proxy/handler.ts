// The pump behind policy.ts: a Fetch API handler (Request → Response) for `/proxy/HOST/PATH`,
// so the same code runs as Vite middleware, in the node server and on workerd. It admits the
// request (CORS allow-list, per-client limits), asks the policy, forwards an allow-list of
// headers, follows redirects itself (never handing Authorization to another origin), relays the
// body untouched under an idle bound, and never throws: every failure becomes a
// distribution-style error (`{ errors: [{ code, message, detail }] }`).
import { PROXY_PATH, loopbackAllowed, publicConfig, type ProxyConfig } from './config.ts';
import { classifyAddress, classifyHost } from '../core/net/destination.ts';
import { ClientLimits } from './limits.ts';
import { describeTarget, type RequestLogEntry } from './log.ts';
import { ProxyMetrics } from './metrics.ts';
import {
  PROXY_DENIED,
  PROXY_LOOP,
  VIA_VALUE,
  corsAccess,
  decide,
  decideRedirect,
  learnableRealm,
  mayLearnFrom,
  selfAuthorities,
  type CorsAccess,
  type Forward,
} from './policy.ts';
import { webRelay, type Relay } from './relay.ts';
import { PROXY_BAD_UPSTREAM, PROXY_UNREACHABLE, UpstreamError, classifyFailure, failureResponse } from './upstream-error.ts';

export { PROXY_DENIED, PROXY_LOOP, PROXY_UNREACHABLE, PROXY_BAD_UPSTREAM };
export { PROXY_BUSY, PROXY_TIMEOUT } from './upstream-error.ts';
export const PROXY_RATE_LIMITED = 'PROXY_RATE_LIMITED';
export const PROXY_INTERNAL = 'PROXY_INTERNAL';

/** What the runtime knows about a request that a Fetch Request does not carry. */
export interface RequestContext {
  /** The client's address (socket peer, or the trusted X-Forwarded-For hop). */
  client?: string;
}

export type ProxyHandler = (request: Request, context?: RequestContext) => Promise<Response | undefined>;

export interface ProxyDeps {
  /** Defaults to globalThis.fetch (undici in node, the runtime's own on workerd). */
  fetch?: typeof fetch;
  /**
   * Resolves a host name to addresses so names that point at loopback/private addresses are
   * refused too (when those are not allowed). Optional: without it only literal addresses are
   * checked. The answer is cached briefly; a name that changes its answer between this check
   * and the connection (DNS rebinding) is not caught.
   */
  lookup?: (hostname: string) => Promise<readonly string[]>;
  /** How many learned realms to keep (oldest forgotten first). Default 64. */
  maxLearnedRealms?: number;
  /**
   * Whether `fetch` bounds the pool wait, connect and headers phases itself (node-fetch.ts
   * does). Otherwise the handler bounds connect + headers together by timeouts.headersMs.
   */
  fetchBounded?: boolean;
  /** Relays bodies; default webRelay. node-fetch.ts has one that keeps socket-to-socket piping. */
  relay?: Relay;
  /** One entry per request, when its body has ended. Default: none. */
  log?: (entry: RequestLogEntry) => void;
  /** Shared with the /metrics route (createAppHandler passes one). */
  metrics?: ProxyMetrics;
  now?: () => number;
}

/** Registry redirects (blob → CDN) followed by the proxy, at most this many in a row. */
export const MAX_REDIRECTS = 5;

/** Request headers passed upstream; everything else (Cookie, Origin, Referer…) stays here. */
export const FORWARDED_REQUEST_HEADERS = [
  'accept',
  'authorization',
  'range',
  'if-none-match',
  'if-modified-since',
  'if-range',
  'if-match',
  'user-agent',
] as const;

/**
 * The registry's WWW-Authenticate challenge is relayed under this name instead: a browser that
 * sees `WWW-Authenticate: Basic` on a fetch answer opens its own sign-in prompt (and headless
 * Chromium stalls on it). longshore's client reads the challenge from here.
 */
export const CHALLENGE_HEADER = 'x-longshore-www-authenticate';

/** For a mirrored registry: `mirror` or `upstream`, whichever answered. */
export const SERVED_BY_HEADER = 'x-longshore-served-by';
/** For a mirrored registry: the mirror's host (`127.0.0.1:5001`). */
export const MIRROR_HEADER = 'x-longshore-mirror';
/** When the registry answered in the mirror's place: why (`down`, `missing`, `unauthorized`). */
export const MIRROR_FALLBACK_HEADER = 'x-longshore-mirror-fallback';

/** Response headers relayed to the browser, and exposed to its scripts through CORS. */
export const RELAYED_RESPONSE_HEADERS = [
  'content-type',
  'content-length',
  'content-range',
  'accept-ranges',
  'docker-content-digest',
  'docker-distribution-api-version',
  'retry-after',
  'etag',
  'link', // distribution-spec pagination of tags/list and _catalog
  'ratelimit-limit', // Docker Hub's pull limits (IETF RateLimit header fields draft), shown in the page
  'ratelimit-remaining',
] as const;

/**
 * On every answer: upstream bytes are served on the app's own origin, so the browser must
 * never sniff them into HTML or run them (an upstream `text/html` with script), nor let another
 * site embed them (CORP; CORS reads by allowed origins are not affected).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': "sandbox; default-src 'none'",
  'cross-origin-resource-policy': 'same-origin',
};

/**
 * Sent by longshore's client with blob requests (`end`): when the upstream breaks off mid-body, end
 * the client's body cleanly where the bytes stop instead of cutting its connection; the answer
 * then carries no Content-Length. Never forwarded upstream.
 */
export const ON_CUT_HEADER = 'x-longshore-on-cut';

const PREFLIGHT_HEADERS = 'Authorization, Accept, Range, If-None-Match, If-Modified-Since, If-Range, If-Match, X-Longshore-On-Cut';
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const LOOKUP_TTL_MS = 30_000;
const LOOKUP_CACHE_SIZE = 256;

/** One request on its way through: what the log line and the metrics are made of. */
interface Exchange {
  request: Request;
  url: URL;
  origin: string | null;
  cors: CorsAccess;
  client: string;
  started: number;
  kind: string;
  upstreamHost: string;
  /** Where this proxy is reachable (policy.selfAuthorities), for loop checks. */
  self: readonly string[];
  /** Frees the client's stream slot (taken once admitted, held until the body has ended). */
  release?: () => void;
  /** For a mirrored registry: who answered, and why the mirror did not. */
  servedBy?: { by: 'mirror' | 'upstream'; mirror: string; reason?: FallbackReason };
}

/** Why a mirror's answer was not used: it failed, lacked the content, or refused the client. */
export type FallbackReason = 'down' | 'missing' | 'unauthorized';

/** An upstream exchange that produced no response: answered (logged) only if nothing else is tried. */
class Failure {
  constructor(
    public message: string,
    private readonly respond: (message: string) => Response,
    readonly kind: string,
  ) {}

  answer(): Response {
    return this.respond(this.message);
  }
}

/**
 * Whether a mirror's answer sends the request on to the registry itself, like containerd's
 * hosts.toml (each host tried in order on an error) and Docker's registry-mirrors: down
 * (no connection, timeout, 5xx), lacking the content (404) or asking for credentials it cannot
 * take (401/403: a mirror is never handed the registry's token unless authorized).
 */
function fallbackReason(result: { upstream: Response } | Failure): FallbackReason | undefined {
  if (result instanceof Failure) return result.kind === 'client-gone' ? undefined : 'down';
  const status = result.upstream.status;
  if (status >= 500) return 'down';
  if (status === 404) return 'missing';
  if (status === 401 || status === 403) return 'unauthorized';
  return undefined;
}

export function createProxyHandler(config: ProxyConfig, deps: ProxyDeps = {}): ProxyHandler {
  const fetchUpstream = deps.fetch ?? globalThis.fetch.bind(globalThis);
  const learned = new BoundedSet(deps.maxLearnedRealms ?? 64);
  const checkResolved = deps.lookup && !loopbackAllowed(config) ? cachedLookupCheck(deps.lookup) : undefined;
  const relay = deps.relay ?? webRelay;
  const metrics = deps.metrics ?? new ProxyMetrics();
  const now = deps.now ?? Date.now;
  const limits = new ClientLimits(config.limits, now);

  /** Logs and counts a request that ends here, with no body to relay. */
  const finish = (x: Exchange, response: Response, failure?: string): Response => {
    x.release?.();
    metrics.request(x.kind, response.status);
    if (failure) metrics.error(failure);
    log(x, response.status, 0, failure);
    return response;
  };

  const log = (x: Exchange, status: number, bytes: number, failure?: string) => {
    if (!deps.log) return;
    const { registry, path } = describeTarget(x.url.pathname, x.url.search);
    const entry: RequestLogEntry = {
      time: new Date(x.started).toISOString(),
      client: x.client,
      method: x.request.method,
      registry,
      path,
      status,
      bytes,
      ms: Math.max(0, now() - x.started),
    };
    if (failure) entry.error = failure;
    deps.log(entry);
  };

  const refuse = (x: Exchange, status: number, code: string, message: string, failure: string, extra?: Record<string, string>) =>
    finish(x, refusal(status, code, message, x.cors === 'allowed' ? x.origin : null, extra), failure);

  /** The request's admission: CORS allow-list, rate, policy. A Response when it ends here. */
  const admit = (x: Exchange): Response | Forward => {
    if (x.cors === 'denied') {
      x.kind = 'refused';
      return refuse(x, 403, PROXY_DENIED, `origin ${x.origin} may not use this proxy; add it to allowedOrigins to allow it`, 'origin');
    }
    const wait = limits.take(x.client);
    if (wait !== undefined) {
      x.kind = 'refused';
      return refuse(x, 429, PROXY_RATE_LIMITED, `too many requests from ${x.client}; retry after ${wait} s`, 'rate-limited', {
        'retry-after': String(wait),
      });
    }
    const decision = decide(
      { method: x.request.method, path: x.url.pathname, query: x.url.search, headers: x.request.headers, self: x.self },
      config,
      learned.view,
    );
    if (!decision.allow) {
      x.kind = 'refused';
      return refuse(x, decision.status, decision.code, decision.reason, decision.code === PROXY_LOOP ? 'loop' : 'denied');
    }
    if (decision.kind === 'preflight') {
      x.kind = 'preflight';
      return finish(x, preflight(x.origin, x.request.headers));
    }
    x.kind = decision.kind;
    // A slot from now until the body has been relayed: waiting on a slow upstream counts too.
    x.release = limits.open(x.client);
    if (!x.release) {
      const message = `${x.client} has ${config.limits.clientStreams} requests open through the proxy already; retry when one ends`;
      return refuse(x, 429, PROXY_RATE_LIMITED, message, 'client-streams', { 'retry-after': '1' });
    }
    return decision;
  };

  /** Sends the request upstream (a mirror first, when it may fall back); the final response or a refusal. */
  const forward = async (x: Exchange, decision: Forward): Promise<{ upstream: Response; redirected: boolean } | Response> => {
    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = x.request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    // Blobs are compressed already and digests cover the exact bytes: ask for them as they are,
    // and refuse (never decode) anything else (see respond). (fetch itself adds it to a Range
    // request, per the Fetch standard.)
    if (!headers.has('range')) headers.set('accept-encoding', 'identity');
    headers.set('via', VIA_VALUE);

    const first = await send(x, decision.upstream, headers, decision.forwardAuthorization);
    if (decision.mirror === undefined) return first instanceof Failure ? first.answer() : first;
    if (decision.fallback && !x.request.signal.aborted) {
      const reason = fallbackReason(first);
      if (reason) {
        if (!(first instanceof Failure)) await first.upstream.body?.cancel().catch(() => undefined);
        metrics.error(`mirror-${reason}`);
        const second = await send(x, decision.fallback, headers, true);
        x.servedBy = { by: 'upstream', mirror: decision.mirror, reason };
        if (second instanceof Failure) {
          const mirrorSaid = first instanceof Failure ? first.message : `status ${first.upstream.status}`;
          second.message = `${second.message} (after mirror ${decision.mirror}: ${mirrorSaid})`;
          return second.answer();
        }
        return second;
      }
    }
    x.servedBy = { by: 'mirror', mirror: decision.mirror };
    return first instanceof Failure ? first.answer() : first;
  };

  /** One upstream exchange, following redirects: the response, or why there is none. */
  const send = async (
    x: Exchange,
    start: URL,
    base: Headers,
    forwardAuthorization: boolean,
  ): Promise<{ upstream: Response; redirected: boolean } | Failure> => {
    const headers = new Headers(base);
    if (!forwardAuthorization) headers.delete('authorization');
    // Runtimes whose fetch has no phase timeouts (workerd) get one bound for connect + headers.
    const bound = config.timeouts.headersMs;
    const fail = (status: number, code: string, message: string, failure: string, extra?: Record<string, string>) =>
      new Failure(message, (text) => refuse(x, status, code, text, failure, extra), failure);
    let target = start;
    const home = target.origin;
    for (let hop = 0; ; hop++) {
      x.upstreamHost = target.host;
      const refused = await checkResolved?.(target.hostname);
      if (refused) return fail(hop === 0 ? 403 : 502, PROXY_DENIED, `${target.host} ${refused}`, 'denied');
      const sent = now();
      let upstream: Response;
      try {
        const request = (signal: AbortSignal) => fetchUpstream(target, { method: x.request.method, headers, redirect: 'manual', signal });
        upstream = await (deps.fetchBounded ? request(x.request.signal) : withBound(bound, x.request.signal, request, target.host));
      } catch (err) {
        if (x.request.signal.aborted)
          return new Failure(
            'the client went away',
            () => finish(x, refusal(499, PROXY_UNREACHABLE, 'the client went away', null), 'client-gone'),
            'client-gone',
          );
        const failure = classifyFailure(err, target.host);
        const { status, code } = failureResponse(failure.kind);
        return fail(status, code, failure.message, failure.kind, failure.kind === 'pool-busy' ? { 'retry-after': '1' } : undefined);
      }
      metrics.upstreamLatency((now() - sent) / 1000);
      const location = upstream.headers.get('location');
      if (!REDIRECT_STATUSES.has(upstream.status) || location === null) return { upstream, redirected: hop > 0 };
      await upstream.body?.cancel().catch(() => undefined);
      if (hop >= MAX_REDIRECTS) {
        return fail(502, PROXY_BAD_UPSTREAM, `upstream ${start.host} redirected more than ${MAX_REDIRECTS} times`, 'redirects');
      }
      const next = decideRedirect(target, location, config, x.self);
      if (!next.allow) return fail(next.status, next.code, next.reason, next.code === PROXY_LOOP ? 'loop' : 'denied');
      target = next.upstream;
      // Credentials belong to the registry (or realm) the client addressed, never to its CDN.
      if (target.origin !== home) headers.delete('authorization');
    }
  };

  /** Turns the upstream's answer into the client's, relaying the body under the idle bound. */
  const respond = async (x: Exchange, decision: Forward, upstream: Response, redirected: boolean): Promise<Response> => {
    const bad = unusable(upstream, x.upstreamHost);
    if (bad) {
      await upstream.body?.cancel().catch(() => undefined);
      const { status, code } = failureResponse(bad.kind);
      return refuse(x, status, code, bad.message, bad.kind);
    }
    if (mayLearnFrom(decision.kind, redirected)) {
      const realm = learnableRealm(upstream.headers.get('www-authenticate'), config);
      if (realm) learned.add(realm);
    }
    const out = new Headers();
    for (const name of RELAYED_RESPONSE_HEADERS) {
      const value = upstream.headers.get(name);
      if (value !== null) out.set(name, value);
    }
    const challenge = upstream.headers.get('www-authenticate');
    if (challenge !== null) out.set(CHALLENGE_HEADER, challenge);
    if (x.servedBy) {
      out.set(SERVED_BY_HEADER, x.servedBy.by);
      out.set(MIRROR_HEADER, x.servedBy.mirror);
      if (x.servedBy.reason) out.set(MIRROR_FALLBACK_HEADER, x.servedBy.reason);
    }
    // The client keeps verified blobs itself, and a tag's manifest must be fresh. no-store matters
    // for speed too: without it Chromium reads a fetch body into the page's memory as fast as it
    // arrives, ahead of the reader (Blink's BufferingBytesConsumer), and every byte went through
    // freshly allocated memory (README, Performance, "What a byte costs here").
    out.set('cache-control', 'no-store');
    out.set('via', VIA_VALUE);
    secure(out);
    cors(out, x.cors === 'allowed' ? x.origin : null);
    const status = upstream.status;
    const bodyless = x.request.method === 'HEAD' || NULL_BODY_STATUSES.has(status) || upstream.body === null;
    metrics.request(x.kind, status);
    if (bodyless) {
      await upstream.body?.cancel().catch(() => undefined);
      x.release?.();
      log(x, status, 0);
      return new Response(null, { status, headers: out });
    }
    // The client checks the length itself and would rather keep every byte that reached it than
    // see its connection cut (transport.ts, PROXY_ON_CUT_HEADER): chunked, so an early end is clean.
    const endOnCut =
      x.request.method === 'GET' &&
      (status === 200 || status === 206) &&
      x.request.headers.get(ON_CUT_HEADER)?.trim().toLowerCase() === 'end';
    if (endOnCut) out.delete('content-length');
    metrics.openStreams++;
    const body = relay(upstream.body, {
      endOnCut,
      idleMs: config.timeouts.bodyIdleMs,
      host: x.upstreamHost,
      onEnd: (bytes, failure) => {
        x.release?.();
        metrics.openStreams--;
        metrics.bytes(bytes);
        if (failure) metrics.error(failure);
        log(x, status, bytes, failure);
      },
    });
    return new Response(body, { status, headers: out });
  };

  return async (request, context = {}) => {
    const url = new URL(request.url);
    if (url.pathname !== PROXY_PATH && !url.pathname.startsWith(`${PROXY_PATH}/`)) return undefined;
    const origin = request.headers.get('origin');
    const x: Exchange = {
      request,
      url,
      origin,
      cors: corsAccess(origin, url, config.allowedOrigins),
      client: context.client ?? 'unknown',
      started: now(),
      kind: 'refused',
      upstreamHost: '',
      self: selfAuthorities(url, config.listen),
    };
    try {
      const admitted = admit(x);
      if (admitted instanceof Response) return admitted;
      const forwarded = await forward(x, admitted);
      if (forwarded instanceof Response) return forwarded;
      return await respond(x, admitted, forwarded.upstream, forwarded.redirected);
    } catch (err) {
      // A bug, not an upstream's doing: answer anyway, and say what broke.
      return refuse(
        x,
        500,
        PROXY_INTERNAL,
        `the proxy failed on this request: ${err instanceof Error ? err.message : String(err)}`,
        'internal',
      );
    }
  };
}

/** Why an upstream response cannot be relayed as it is, or undefined when it can. */
function unusable(upstream: Response, host: string): UpstreamError | undefined {
  if (upstream.status < 200 || upstream.status > 599) {
    // e.g. an opaque redirect, where a runtime will not show the proxy a manual redirect.
    return new UpstreamError('bad-status', `upstream ${host} gave an unusable response (status ${upstream.status}, ${upstream.type})`);
  }
  const encoding = upstream.headers.get('content-encoding');
  if (encoding !== null && encoding.trim().toLowerCase() !== 'identity') {
    // Decoding would change the bytes digests cover, and one small gzip body can expand to GiBs.
    return new UpstreamError(
      'encoding',
      `upstream ${host} sent Content-Encoding: ${encoding.slice(0, 40)} although the proxy asked for identity; the proxy does not decode`,
    );
  }
  return undefined;
}

/** Runs `run` with a signal that fires when the client goes away or after `ms`. */
async function withBound<T>(ms: number, outer: AbortSignal, run: (signal: AbortSignal) => Promise<T>, host: string): Promise<T> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(outer.reason);
  outer.addEventListener('abort', onAbort, { once: true });
  if (outer.aborted) onAbort();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new UpstreamError('headers-timeout', `upstream ${host} did not answer within ${ms} ms`);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([run(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
    outer.removeEventListener('abort', onAbort);
  }
}

/** Where the browser client reads the public part of the config. */
export const CONFIG_PATH = '/config.json';

/** `GET /config.json`: what the client may know (proxy path, reachable registries). */
export function createConfigRoute(config: ProxyConfig): ProxyHandler {
  const body = JSON.stringify(publicConfig(config));
  return async (request) => {
    if (new URL(request.url).pathname !== CONFIG_PATH) return undefined;
    if (request.method !== 'GET' && request.method !== 'HEAD') return undefined;
    const headers = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' };
    return new Response(request.method === 'HEAD' ? null : body, { headers });
  };
}

export const HEALTH_PATH = '/healthz';
export const METRICS_PATH = '/metrics';

export interface AppOptions {
  /** Extra Prometheus lines for /metrics (node adds process memory). */
  metricsExtra?: () => string[];
}

/** The proxy, the config route, /healthz and /metrics: what serve.ts, Vite and workerd mount. */
export function createAppHandler(config: ProxyConfig, deps: ProxyDeps = {}, options: AppOptions = {}): ProxyHandler {
  const metrics = deps.metrics ?? new ProxyMetrics();
  const proxy = createProxyHandler(config, { ...deps, metrics });
  const configRoute = createConfigRoute(config);
  return async (request, context) => {
    const proxied = await proxy(request, context);
    if (proxied) return proxied;
    const { pathname } = new URL(request.url);
    if ((pathname === HEALTH_PATH || pathname === METRICS_PATH) && (request.method === 'GET' || request.method === 'HEAD')) {
      const metricsPage = pathname === METRICS_PATH;
      const body = metricsPage ? metrics.render(options.metricsExtra?.() ?? []) : '{"status":"ok"}\n';
      const type = metricsPage ? 'text/plain; version=0.0.4; charset=utf-8' : 'application/json; charset=utf-8';
      return new Response(request.method === 'HEAD' ? null : body, { headers: { 'content-type': type, 'cache-control': 'no-store' } });
    }
    return configRoute(request);
  };
}

/** A refusal in the distribution error envelope, so the client shows the message. */
export function refusal(status: number, code: string, message: string, origin: string | null, extra?: Record<string, string>): Response {
  const headers = new Headers({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', via: VIA_VALUE, ...extra });
  if (status === 405) headers.set('allow', 'GET, HEAD, OPTIONS');
  secure(headers);
  cors(headers, origin);
  const body = JSON.stringify({ errors: [{ code, message, detail: { proxy: true } }] });
  return new Response(body, { status, headers });
}

/**
 * Answers a CORS preflight from an allowed origin, including Private Network Access's
 * `Access-Control-Request-Private-Network` (a public page reaching a loopback/private server).
 */
function preflight(origin: string | null, request: Headers): Response {
  const headers = new Headers({
    'access-control-allow-methods': 'GET, HEAD, OPTIONS',
    'access-control-allow-headers': PREFLIGHT_HEADERS,
    'access-control-max-age': '600',
  });
  cors(headers, origin);
  if (origin !== null && request.get('access-control-request-private-network') === 'true') {
    headers.set('access-control-allow-private-network', 'true');
  }
  headers.append('vary', 'Access-Control-Request-Headers');
  return new Response(null, { status: 204, headers });
}

/** CORS headers for an allowed origin; nothing for none (same-origin or not a browser). */
function cors(headers: Headers, origin: string | null): void {
  headers.append('vary', 'Origin');
  if (origin === null) return;
  headers.set('access-control-allow-origin', origin);
  headers.set(
    'access-control-expose-headers',
    [...RELAYED_RESPONSE_HEADERS, CHALLENGE_HEADER, SERVED_BY_HEADER, MIRROR_HEADER, MIRROR_FALLBACK_HEADER].join(', '),
  );
}

function secure(headers: Headers): void {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) headers.set(name, value);
}

/** Insertion-ordered set that forgets its oldest entry past `limit`; `view` is read-only. */
class BoundedSet {
  readonly #items = new Set<string>();
  constructor(private readonly limit: number) {}

  get view(): ReadonlySet<string> {
    return this.#items;
  }

  add(item: string): void {
    this.#items.delete(item);
    this.#items.add(item);
    while (this.#items.size > this.limit) {
      const oldest = this.#items.values().next().value;
      if (oldest === undefined) break;
      this.#items.delete(oldest);
    }
  }
}

/** Checks what a host name resolves to, with a short-lived cache; literals are checked by policy. */
function cachedLookupCheck(lookup: (hostname: string) => Promise<readonly string[]>) {
  const cache = new Map<string, { refusal: string | undefined; until: number }>();
  return async (hostname: string): Promise<string | undefined> => {
    if (/^[\d.]+$/.test(hostname) || hostname.startsWith('[') || classifyHost(hostname)) return undefined;
    const now = Date.now();
    const hit = cache.get(hostname);
    if (hit && hit.until > now) return hit.refusal;
    let refused: string | undefined;
    try {
      const addresses = await lookup(hostname);
      const bad = addresses.find((a) => classifyAddress(a));
      if (bad) {
        refused =
          `resolves to ${bad}, a ${classifyAddress(bad)} address; the proxy reaches loopback/private hosts only ` +
          'when it listens on loopback itself (allowLoopback: "auto") or when allowLoopback is true';
      }
    } catch {
      return undefined; // let the fetch report that the name does not resolve
    }
    cache.delete(hostname);
    cache.set(hostname, { refusal: refused, until: now + LOOKUP_TTL_MS });
    if (cache.size > LOOKUP_CACHE_SIZE) cache.delete(cache.keys().next().value!);
    return refused;
  };
}
