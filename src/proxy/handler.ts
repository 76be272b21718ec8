// The pump behind policy.ts: a Fetch API handler (Request → Response) for `/proxy/HOST/PATH`,
// so the same code runs as Vite middleware, in the node server and on an edge runtime. It asks
// the policy, forwards an allow-list of headers, follows redirects itself (never handing
// Authorization to another origin), streams the body back untouched and adds CORS headers.
import { PROXY_PATH, loopbackAllowed, publicConfig, type ProxyConfig } from './config.ts';
import { classifyAddress, classifyHost } from './destination.ts';
import { decide, decideRedirect, learnableRealm } from './policy.ts';

export type ProxyHandler = (request: Request) => Promise<Response | undefined>;

export interface ProxyDeps {
  /** Defaults to globalThis.fetch (undici in node: keep-alive pooled connections). */
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
}

/** Error codes in the distribution-style envelope `{ errors: [{ code, message, detail }] }`. */
export const PROXY_DENIED = 'PROXY_DENIED';
export const PROXY_UNREACHABLE = 'PROXY_UNREACHABLE';

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
] as const;

const PREFLIGHT_HEADERS = 'Authorization, Accept, Range, If-None-Match, If-Modified-Since, If-Range, If-Match';
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const LOOKUP_TTL_MS = 30_000;
const LOOKUP_CACHE_SIZE = 256;

export function createProxyHandler(config: ProxyConfig, deps: ProxyDeps = {}): ProxyHandler {
  const fetchUpstream = deps.fetch ?? globalThis.fetch.bind(globalThis);
  const learned = new BoundedSet(deps.maxLearnedRealms ?? 64);
  const checkResolved = deps.lookup && !loopbackAllowed(config) ? cachedLookupCheck(deps.lookup) : undefined;

  return async (request) => {
    const url = new URL(request.url);
    if (url.pathname !== PROXY_PATH && !url.pathname.startsWith(`${PROXY_PATH}/`)) return undefined;
    const origin = request.headers.get('origin');

    const decision = decide(
      { method: request.method, path: url.pathname, query: url.search, headers: request.headers },
      config,
      learned.view,
    );
    if (!decision.allow) return refusal(decision.status, PROXY_DENIED, decision.reason, origin);
    if (decision.kind === 'preflight') return preflight(origin);

    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    // Blobs are compressed already and digests cover the exact bytes: ask for them as they are.
    // (fetch itself adds it to a Range request, per the Fetch standard.)
    if (!headers.has('range')) headers.set('accept-encoding', 'identity');

    let target = decision.upstream;
    const home = target.origin;
    let upstream: Response;
    for (let hop = 0; ; hop++) {
      const refused = await checkResolved?.(target.hostname);
      if (refused) {
        const status = hop === 0 ? 403 : 502;
        return refusal(status, PROXY_DENIED, `${target.host} ${refused}`, origin);
      }
      try {
        upstream = await fetchUpstream(target, {
          method: request.method,
          headers,
          redirect: 'manual',
          signal: request.signal,
        });
      } catch (err) {
        return refusal(502, PROXY_UNREACHABLE, `upstream ${target.host} is unreachable: ${describe(err)}`, origin);
      }
      const location = upstream.headers.get('location');
      if (!REDIRECT_STATUSES.has(upstream.status) || location === null) break;
      await upstream.body?.cancel().catch(() => undefined);
      if (hop >= MAX_REDIRECTS) {
        return refusal(502, PROXY_DENIED, `upstream ${decision.upstream.host} redirected more than ${MAX_REDIRECTS} times`, origin);
      }
      const next = decideRedirect(target, location, config);
      if (!next.allow) return refusal(next.status, PROXY_DENIED, next.reason, origin);
      target = next.upstream;
      // Credentials belong to the registry (or realm) the client addressed, never to its CDN.
      if (target.origin !== home) headers.delete('authorization');
    }

    if (upstream.status < 200 || upstream.status > 599) {
      // e.g. an opaque redirect, where a runtime will not show the proxy a manual redirect.
      return refusal(502, PROXY_UNREACHABLE, `upstream ${target.host} gave an unusable response (status ${upstream.status}, ${upstream.type})`, origin);
    }
    if (decision.kind === 'registry') {
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
    // fetch decodes a Content-Encoding it did not ask for; the length no longer matches.
    if (upstream.headers.has('content-encoding')) out.delete('content-length');
    // The client keeps verified blobs itself, and a tag's manifest must be fresh.
    out.set('cache-control', 'no-store');
    cors(out, origin);
    const bodyless = request.method === 'HEAD' || NULL_BODY_STATUSES.has(upstream.status);
    if (bodyless) await upstream.body?.cancel().catch(() => undefined);
    return new Response(bodyless ? null : upstream.body, {
      status: upstream.status,
      statusText: upstream.statusText,
      headers: out,
    });
  };
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

/** The proxy and the config route together: what serve.ts and the Vite plugin mount. */
export function createAppHandler(config: ProxyConfig, deps: ProxyDeps = {}): ProxyHandler {
  const proxy = createProxyHandler(config, deps);
  const configRoute = createConfigRoute(config);
  return async (request) => (await proxy(request)) ?? configRoute(request);
}

/** A refusal in the distribution error envelope, so the client shows the message. */
export function refusal(status: number, code: string, message: string, origin: string | null): Response {
  const headers = new Headers({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  if (status === 405) headers.set('allow', 'GET, HEAD, OPTIONS');
  cors(headers, origin);
  const body = JSON.stringify({ errors: [{ code, message, detail: { proxy: true } }] });
  return new Response(body, { status, headers });
}

function preflight(origin: string | null): Response {
  const headers = new Headers({
    'access-control-allow-methods': 'GET, HEAD, OPTIONS',
    'access-control-allow-headers': PREFLIGHT_HEADERS,
    'access-control-max-age': '600',
  });
  cors(headers, origin);
  headers.append('vary', 'Access-Control-Request-Headers');
  return new Response(null, { status: 204, headers });
}

function cors(headers: Headers, origin: string | null): void {
  headers.set('access-control-allow-origin', origin ?? '*');
  headers.set('access-control-expose-headers', [...RELAYED_RESPONSE_HEADERS, CHALLENGE_HEADER].join(', '));
  if (origin !== null) headers.append('vary', 'Origin');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'AbortError') return 'the request was cancelled';
  const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail ? `${err.message} (${detail})` : err.message;
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
        refused = `resolves to ${bad}, a ${classifyAddress(bad)} address; the proxy reaches loopback/private hosts only `
          + 'when it listens on loopback itself (allowLoopback: "auto") or when allowLoopback is true';
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
