// The proxy's allow-list, as pure functions: given a request (method, path, query, headers), the
// config and the realms learned so far, say where it may go or why not. No I/O, so every rule
// is checked by a table test (tests/proxy/policy.test.ts). Both the request's shape and its
// destination are checked: a path must be a distribution API path (distribution-spec
// "Endpoints") or a token realm, and the upstream host must not be loopback/private unless the
// config allows it.
import { DOCKER_HUB_ALIASES, DOCKER_HUB_API_HOST, PROXY_PATH, loopbackAllowed, normaliseRealm, type ProxyConfig } from './config.ts';
import { classifyHost, isLoopbackHostname as isLoopbackHost } from '../core/net/destination.ts';

export interface ProxyRequest {
  method: string;
  /**
   * Addresses (`hostname:port`, port always written) that reach this proxy itself: the request's
   * own Host and the listen address (see selfAuthorities). A target among them is a loop.
   */
  self?: readonly string[];
  /** URL pathname, e.g. `/proxy/ghcr.io/v2/foo/manifests/latest`. */
  path: string;
  /** URL search, with or without the leading `?` (may be empty). */
  query: string;
  headers?: Headers | Readonly<Record<string, string | undefined>>;
}

export type UpstreamKind = 'registry' | 'realm' | 'redirect' | 'foreign';

export interface Forward {
  allow: true;
  kind: UpstreamKind;
  upstream: URL;
  /** Whether the client's Authorization may go to this upstream (not to a mirror, by default). */
  forwardAuthorization: boolean;
  /** When `upstream` is a mirror: its host (`127.0.0.1:5001`), named in X-Longshore-Served-By. */
  mirror?: string;
  /**
   * When `upstream` is a mirror that may fall back: the same request on the registry itself,
   * sent when the mirror is down or lacks the content (Authorization always goes there).
   */
  fallback?: URL;
}

/** A CORS preflight: answered by the proxy itself, nothing goes upstream. */
export interface Preflight {
  allow: true;
  kind: 'preflight';
}

export interface Denial {
  allow: false;
  status: 403 | 404 | 405 | 502 | 508;
  /** The distribution-style error code the refusal carries. */
  code: typeof PROXY_DENIED | typeof PROXY_LOOP;
  reason: string;
}

/** Error codes in the distribution-style envelope `{ errors: [{ code, message, detail }] }`. */
export const PROXY_DENIED = 'PROXY_DENIED';
/** A request that went through this proxy already (our Via), or a target that is the proxy itself. */
export const PROXY_LOOP = 'PROXY_LOOP';

/** How this proxy names itself in `Via` (RFC 9110 7.6.3): `Via: 1.1 longshore`. */
export const VIA_PSEUDONYM = 'longshore';
export const VIA_VALUE = `1.1 ${VIA_PSEUDONYM}`;

/** A realm longer than this is not learned (a challenge is attacker-controlled text). */
export const MAX_REALM_LENGTH = 512;

export type Decision = Forward | Preflight | Denial;

export const ALLOWED_METHODS = ['GET', 'HEAD'] as const;

// distribution-spec "Pulling": repository names, tags and digests.
const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
// image-spec descriptor.md#digests
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const MAX_NAME_LENGTH = 255;

/** Decides one request under `/proxy/`. `learned` holds realms (origin + path) learned so far. */
export function decide(request: ProxyRequest, config: ProxyConfig, learned: ReadonlySet<string>): Decision {
  const method = request.method.toUpperCase();
  if (method === 'OPTIONS') {
    const wanted = header(request.headers, 'access-control-request-method');
    if (wanted === undefined || (ALLOWED_METHODS as readonly string[]).includes(wanted.toUpperCase()))
      return { allow: true, kind: 'preflight' };
    return deny(405, `method ${wanted} is not allowed through the proxy (only GET and HEAD)`);
  }
  if (!(ALLOWED_METHODS as readonly string[]).includes(method)) {
    return deny(405, `method ${method} is not allowed through the proxy (only GET and HEAD)`);
  }

  if (carriesOurVia(header(request.headers, 'via'))) {
    return deny(
      508,
      `the request already went through this proxy (Via: ${VIA_PSEUDONYM}); a registry or redirect points back at it`,
      PROXY_LOOP,
    );
  }

  const prefix = `${PROXY_PATH}/`;
  if (!request.path.startsWith(prefix)) return deny(404, `${request.path} is not a proxy path (expected ${prefix}HOST/PATH)`);
  const rest = request.path.slice(prefix.length);
  const slash = rest.indexOf('/');
  const authority = (slash < 0 ? rest : rest.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? '/' : rest.slice(slash);
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?$/.test(authority)) {
    return deny(404, `${JSON.stringify(authority)} is not a host name (expected ${prefix}HOST[:PORT]/PATH)`);
  }
  const query = request.query === '' || request.query.startsWith('?') ? request.query : `?${request.query}`;

  const self = request.self ?? [];
  const realm = matchRealm(authority, path, config, learned);
  if (realm) return checked(new URL(`${realm}${query}`), 'realm', config, self);

  // An unlisted loopback host counts as a registry only for API paths: anything else there
  // (a token realm, say) stays refused until configured or learned.
  const isApiPath = path === '/v2' || path.startsWith('/v2/');
  const origin = registryOrigin(authority, config, isApiPath);
  if (!origin || !isApiPath) {
    // A foreign layer's `urls` entry (image-spec layer.md "Non-distributable layers"): only
    // under a configured prefix, and never with the client's Authorization (it is a registry's).
    const foreign = foreignLayerUrl(authority, path, query, config);
    if (foreign) {
      const forward = checked(foreign, 'foreign', config, self);
      if (forward.allow) forward.forwardAuthorization = false;
      return forward;
    }
  }
  if (!origin) {
    return deny(
      403,
      `${authority} is not a configured registry, mirror or token realm (nor under foreignLayerHosts)${path !== '/' ? ` (path ${path})` : ''}`,
    );
  }
  const apiPath = distributionPath(path);
  if (typeof apiPath !== 'string') return deny(404, `${path} on ${authority} is not a distribution API path: ${apiPath.reason}`);
  const mirrored = mirrorKey(authority, config);
  const forward = checked(new URL(`${origin}${apiPath}${query}`), 'registry', config, self);
  if (!forward.allow || mirrored === undefined) return forward;
  forward.mirror = forward.upstream.host;
  if (!config.authorizedMirrors.includes(mirrored)) forward.forwardAuthorization = false;
  if (!config.mirrorsWithoutFallback.includes(mirrored)) {
    // Like Docker's registry-mirrors and containerd's hosts.toml: the registry itself stays the
    // source of truth; a fallback that is refused (or absent) leaves the mirror as the only one.
    const home = registryOrigin(authority, { ...config, mirrors: {} }, true);
    const fallback = home ? checked(new URL(`${home}${apiPath}${query}`), 'registry', config, self) : undefined;
    if (fallback?.allow) forward.fallback = fallback.upstream;
  }
  return forward;
}

/**
 * The URL a foreign layer is fetched from, when `authority + path` falls under a configured
 * `foreignLayerHosts` prefix (whose scheme it takes); undefined otherwise. Dot segments are
 * refused, so a prefix cannot be left by `..`.
 */
export function foreignLayerUrl(
  authority: string,
  path: string,
  query: string,
  config: Pick<ProxyConfig, 'foreignLayerHosts'>,
): URL | undefined {
  if (/(^|\/)\.\.?(\/|$)/.test(path) || /%2e/i.test(path)) return undefined;
  for (const prefix of config.foreignLayerHosts) {
    const base = new URL(prefix);
    if (base.host !== authority) continue;
    if (path === base.pathname || (path.startsWith(base.pathname) && (base.pathname.endsWith('/') || path[base.pathname.length] === '/'))) {
      return new URL(`${base.origin}${path}${query}`);
    }
  }
  return undefined;
}

/**
 * Decides whether the proxy may follow a redirect from `from` to `location`. `self` as in
 * ProxyRequest: a redirect back to the proxy is a loop.
 */
export function decideRedirect(from: URL, location: string, config: ProxyConfig, self: readonly string[] = []): Forward | Denial {
  let target: URL;
  try {
    target = new URL(location, from);
  } catch {
    return deny(502, `${from.host} redirected to an invalid URL ${JSON.stringify(location.slice(0, 200))}`);
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    return deny(502, `${from.host} redirected to a ${target.protocol.replace(/:$/, '')} URL; only http and https are followed`);
  }
  if (target.username || target.password) return deny(502, `${from.host} redirected to a URL with credentials in it`);
  target.hash = '';
  if (self.includes(authorityOf(target)))
    return deny(508, `${from.host} redirected to ${target.host}, which is this proxy itself`, PROXY_LOOP);
  const refused = destinationRefusal(target.hostname, config);
  if (refused) return deny(502, `${from.host} redirected to ${target.host}, which ${refused}`);
  // Authorization stays with the origin that was addressed (the handler drops it on a change).
  return { allow: true, kind: 'redirect', upstream: target, forwardAuthorization: true };
}

/**
 * Whether a challenge may teach the proxy a realm: only an allowed registry's own answer (not a
 * redirect target's, not a realm's), so the proxy's reach grows only with what a configured
 * registry names.
 */
export function mayLearnFrom(kind: UpstreamKind | 'preflight', redirected: boolean): boolean {
  return kind === 'registry' && !redirected;
}

/** `hostname:port` with the port always written, the form `self` holds. */
export function authorityOf(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

/**
 * The addresses that reach this proxy: the Host the request came to (`requestUrl`), the listen
 * address, and when listening on loopback or every interface the loopback names too. Requests
 * and redirects to them are loops; the Via check catches the ones this cannot know.
 */
export function selfAuthorities(requestUrl: URL, listen: ProxyConfig['listen']): string[] {
  const out = new Set<string>([authorityOf(requestUrl)]);
  const port = listen.port === 0 ? undefined : String(listen.port);
  if (port) {
    const host = listen.host.includes(':') && !listen.host.startsWith('[') ? `[${listen.host}]` : listen.host;
    out.add(authorityOf(new URL(`http://${host}:${port}`)));
    if (isLoopbackHost(host) || ['0.0.0.0', '[::]'].includes(host)) {
      for (const name of ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0', '[::]']) out.add(`${name}:${port}`);
    }
  }
  return [...out];
}

/** Whether a Via header already lists this proxy (RFC 9110 7.6.3: `proto received-by [comment]`). */
export function carriesOurVia(via: string | undefined | null): boolean {
  if (!via) return false;
  return via.split(',').some((hop) => hop.trim().split(/\s+/)[1]?.toLowerCase() === VIA_PSEUDONYM);
}

export type CorsAccess = 'none' | 'allowed' | 'denied';

/**
 * Whether the page at `origin` may read proxy answers (Fetch standard "CORS protocol"). `none`:
 * no Origin header (a same-origin GET or a non-browser client): no CORS headers are needed.
 * The app's own origin (same host and port as the request, either scheme, since a TLS
 * terminator in front changes it) is always allowed; others only when listed.
 */
export function corsAccess(origin: string | null | undefined, requestUrl: URL, allowedOrigins: readonly string[]): CorsAccess {
  if (origin === null || origin === undefined) return 'none';
  if (allowedOrigins.includes('*')) return 'allowed';
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return 'denied'; // "null" (sandboxed frames, file:) and anything unreadable
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'denied';
  if (url.host === requestUrl.host) return 'allowed';
  return allowedOrigins.includes(url.origin) ? 'allowed' : 'denied';
}

/**
 * The realm (origin + path) named by a Bearer challenge in a relayed WWW-Authenticate header,
 * when it may be learned: an http(s) URL whose host passes the destination check.
 */
export function learnableRealm(wwwAuthenticate: string | null | undefined, config: ProxyConfig): string | undefined {
  if (!wwwAuthenticate || wwwAuthenticate.length > 8 * MAX_REALM_LENGTH) return undefined;
  const match = /(?:^|,)\s*Bearer\s+(?:[^]*?[\s,])?realm\s*=\s*(?:"([^"]*)"|([^\s,]+))/i.exec(wwwAuthenticate);
  const value = match?.[1] ?? match?.[2];
  if (!value || value.length > MAX_REALM_LENGTH) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  url.search = '';
  url.hash = '';
  const realm = normaliseRealm(url.toString());
  if (!realm || destinationRefusal(url.hostname, config)) return undefined;
  return realm;
}

/**
 * Why `hostname` (a URL hostname) may not be reached, or undefined when it may. Literal checks
 * only; names are resolved (optionally) by the handler.
 */
export function destinationRefusal(hostname: string, config: Pick<ProxyConfig, 'allowLoopback' | 'listen'>): string | undefined {
  const kind = classifyHost(hostname);
  if (!kind || loopbackAllowed(config)) return undefined;
  return (
    `is a ${kind} address; the proxy reaches loopback/private hosts only when it listens on loopback itself ` +
    '(allowLoopback: "auto") or when allowLoopback is true'
  );
}

/**
 * Validates a distribution API path and returns it rebuilt from its checked parts, or the reason
 * it is not one. Accepted: `/v2/`, `/v2/_catalog`, `/v2/<name>/tags/list`,
 * `/v2/<name>/manifests/<tag|digest>`, `/v2/<name>/blobs/<digest>`.
 */
export function distributionPath(path: string): string | { reason: string } {
  if (path === '/v2/' || path === '/v2') return '/v2/';
  if (!path.startsWith('/v2/')) return { reason: 'registry paths start with /v2/' };
  let parts: string[];
  try {
    parts = path
      .slice('/v2/'.length)
      .split('/')
      .map((p) => decodeURIComponent(p));
  } catch {
    return { reason: 'bad percent-encoding' };
  }
  if (parts.length === 1 && parts[0] === '_catalog') return '/v2/_catalog';
  if (parts.length < 3) return { reason: 'expected /v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest> or /v2/<name>/tags/list' };
  const last = parts[parts.length - 1]!;
  const verb = parts[parts.length - 2]!;
  const name = parts.slice(0, -2).join('/');
  if (name.length > MAX_NAME_LENGTH || !NAME.test(name)) return { reason: `${JSON.stringify(name)} is not a repository name` };
  if (verb === 'tags' && last === 'list') return `/v2/${name}/tags/list`;
  if (verb === 'manifests') {
    if (TAG.test(last) || DIGEST.test(last)) return `/v2/${name}/manifests/${last}`;
    return { reason: `${JSON.stringify(last)} is neither a tag nor a digest` };
  }
  if (verb === 'blobs') {
    if (DIGEST.test(last)) return `/v2/${name}/blobs/${last}`;
    return { reason: `${JSON.stringify(last)} is not a digest` };
  }
  return { reason: 'expected /v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest> or /v2/<name>/tags/list' };
}

/** The mirror key that serves `authority`, if a mirror does. */
function mirrorKey(authority: string, config: ProxyConfig): string | undefined {
  const hubGroup = DOCKER_HUB_ALIASES.includes(authority) ? DOCKER_HUB_ALIASES : [authority];
  return hubGroup.find((key) => config.mirrors[key] !== undefined);
}

/** The upstream origin serving the distribution API for `authority`, mirrors first. */
export function registryOrigin(authority: string, config: ProxyConfig, implicitLoopback = true): string | undefined {
  const hubGroup = DOCKER_HUB_ALIASES.includes(authority) ? DOCKER_HUB_ALIASES : [authority];
  for (const key of hubGroup) {
    const mirror = config.mirrors[key];
    if (mirror) return mirror;
  }
  const exact = config.registries.find((r) => r.host === authority);
  if (exact) return `${exact.scheme}://${exact.host === 'docker.io' ? DOCKER_HUB_API_HOST : exact.host}`;
  const hub = config.registries.find((r) => hubGroup.includes(r.host));
  if (hub) return `${hub.scheme}://${DOCKER_HUB_API_HOST}`;
  // A registry on this machine (`localhost:5000/x`, as with `docker run registry`) needs no
  // config while the proxy itself listens on loopback; like Docker, it is spoken to over http.
  if (implicitLoopback && loopbackAllowed(config) && config.allowLoopback === 'auto' && isLoopbackHost(hostnameOf(authority)))
    return `http://${authority}`;
  return undefined;
}

function hostnameOf(authority: string): string {
  try {
    return new URL(`http://${authority}`).hostname;
  } catch {
    return '';
  }
}

function matchRealm(authority: string, path: string, config: ProxyConfig, learned: ReadonlySet<string>): string | undefined {
  const matches = (realm: string) => {
    const url = new URL(realm);
    return url.host === authority && url.pathname === path;
  };
  return config.tokenRealms.find(matches) ?? [...learned].find(matches);
}

function checked(upstream: URL, kind: UpstreamKind, config: ProxyConfig, self: readonly string[]): Forward | Denial {
  if (self.includes(authorityOf(upstream))) return deny(508, `${upstream.host} is this proxy itself`, PROXY_LOOP);
  const refused = destinationRefusal(upstream.hostname, config);
  if (refused) return deny(403, `${upstream.host} ${refused}`);
  return { allow: true, kind, upstream, forwardAuthorization: true };
}

function deny(status: Denial['status'], reason: string, code: Denial['code'] = PROXY_DENIED): Denial {
  return { allow: false, status, code, reason };
}

function header(headers: ProxyRequest['headers'], name: string): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const record = headers as Readonly<Record<string, string | undefined>>;
  for (const [key, value] of Object.entries(record)) if (key.toLowerCase() === name) return value;
  return undefined;
}
