// The proxy's configuration: an embedded default (the big public registries and their token
// realms), a JSON file merged over it (LONGSHORE_CONFIG) and environment overrides, checked
// once here so that policy.ts and handler.ts can trust what they get. Runtime-neutral: the only
// node API (reading the file) is imported lazily, and only when no reader is injected.
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import { classifyHost, isLoopbackHostname as isLoopbackHost } from '../core/net/destination.ts';

export type Scheme = 'http' | 'https';

export interface RegistryEntry {
  /** `hostname[:port]` as the client writes it after `/proxy/` (lower-case, default port dropped). */
  host: string;
  scheme: Scheme;
}

export interface ProxyConfig {
  listen: { host: string; port: number };
  registries: RegistryEntry[];
  /** Registry host (or `docker.io`) → mirror origin (`http://127.0.0.1:5000`). */
  mirrors: Record<string, string>;
  /** Mirror keys whose mirror is handed the client's Authorization (never by default). */
  authorizedMirrors: string[];
  /**
   * Mirror keys whose mirror is the only source (no fallback to the upstream registry when the
   * mirror is down or lacks the content; by default every mirror falls back).
   */
  mirrorsWithoutFallback: string[];
  /**
   * Where foreign layers (`urls` of non-distributable layers, e.g. Windows base layers) may be
   * fetched from: URL prefixes (origin + path prefix), https unless written otherwise.
   */
  foreignLayerHosts: string[];
  /** Token realms as origin + path (`https://auth.docker.io/token`), no query. */
  tokenRealms: string[];
  /** Loopback/private upstreams: `auto` = only while listening on loopback. */
  allowLoopback: boolean | 'auto';
  /** Page origins allowed to read through the proxy besides its own (`*` = any page). */
  allowedOrigins: string[];
  /** Take the client address from the last `X-Forwarded-For` entry (behind nginx). */
  trustForwardedFor: boolean;
  timeouts: Timeouts;
  limits: Limits;
}

/** Every upstream phase has a bound (milliseconds). */
export interface Timeouts {
  /** TCP (+ TLS) connection to the upstream. */
  connectMs: number;
  /** From sending the request to the upstream's status line and headers. */
  headersMs: number;
  /** Longest pause while relaying a body, whichever side stalls (upstream or client). */
  bodyIdleMs: number;
  /** Longest wait for a pooled upstream connection before answering 503. */
  poolWaitMs: number;
}

/** Limits that keep one client or one registry from taking the whole proxy. 0 = no limit. */
export interface Limits {
  /** Open client connections to the server (node server only). */
  maxConnections: number;
  /** Upstream connections per upstream origin (the pool). */
  upstreamSocketsPerOrigin: number;
  /** Proxied requests one client may have in flight (until their bodies are relayed). */
  clientStreams: number;
  /** Sustained proxied requests per second per client (token bucket refill). */
  clientRequestsPerSecond: number;
  /** Requests a client may make at once above the sustained rate (bucket size). */
  clientBurst: number;
}

/** What the browser client may know: `GET /config.json`. */
export interface PublicConfig {
  proxyPath: string;
  /** Hosts reachable through the proxy: configured registries and mirror keys. */
  registries: string[];
}

/** The URL path under which the proxy route lives: `/proxy/HOST[:PORT]/PATH?QUERY`. */
export const PROXY_PATH = '/proxy';

/**
 * Known public registries and the token realms their WWW-Authenticate challenges name.
 * registry.k8s.io and mcr.microsoft.com serve anonymously (no realm); registry.k8s.io answers
 * with redirects to regional Artifact Registry / S3 hosts, which the handler follows itself.
 * A realm not listed here is still reachable once an allowed registry has named it.
 */
export const DEFAULT_CONFIG: Readonly<ProxyConfig> = deepFreeze({
  listen: { host: '127.0.0.1', port: 8080 },
  registries: [
    { host: 'registry-1.docker.io', scheme: 'https' },
    { host: 'ghcr.io', scheme: 'https' },
    { host: 'quay.io', scheme: 'https' },
    { host: 'gcr.io', scheme: 'https' },
    { host: 'registry.k8s.io', scheme: 'https' },
    { host: 'mcr.microsoft.com', scheme: 'https' },
    { host: 'public.ecr.aws', scheme: 'https' },
  ],
  mirrors: {},
  authorizedMirrors: [],
  mirrorsWithoutFallback: [],
  foreignLayerHosts: [],
  tokenRealms: [
    'https://auth.docker.io/token',
    'https://ghcr.io/token',
    'https://quay.io/v2/auth',
    'https://gcr.io/v2/token',
    'https://public.ecr.aws/token',
  ],
  allowLoopback: 'auto',
  allowedOrigins: [],
  trustForwardedFor: false,
  timeouts: { connectMs: 10_000, headersMs: 30_000, bodyIdleMs: 30_000, poolWaitMs: 5_000 },
  limits: { maxConnections: 1024, upstreamSocketsPerOrigin: 64, clientStreams: 32, clientRequestsPerSecond: 50, clientBurst: 200 },
} satisfies ProxyConfig);

/** Docker Hub answers under several names; `docker.io` in a mirror key means all of them. */
export const DOCKER_HUB_ALIASES: readonly string[] = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
/** The host that actually serves Docker Hub's distribution API. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

export class ProxyConfigError extends LongshoreError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(ErrorCode.InvalidArgument, `Invalid longshore proxy config:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
      hint: 'See "Proxy configuration" in README.md for the accepted keys and forms.',
      data: { problems: [...problems] },
    });
    this.name = 'ProxyConfigError';
    this.problems = problems;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export interface LoadOptions {
  /** Defaults to process.env. */
  env?: Env;
  /** Reads the LONGSHORE_CONFIG file; defaults to node:fs. */
  readFile?: (path: string) => Promise<string>;
}

/**
 * The default with `over` merged over it (as a LONGSHORE_CONFIG file is), checked: for runtimes
 * without files or environment variables (workerd passes the JSON as a binding).
 */
export function configFrom(over: unknown, source = 'config'): ProxyConfig {
  if (!isObject(over)) throw new ProxyConfigError([`${source}: must be a JSON object`]);
  return parseConfig(mergeRaw(toRaw(DEFAULT_CONFIG), over), source);
}

/** Default → file named by LONGSHORE_CONFIG → LONGSHORE_* variables; throws ProxyConfigError. */
export async function loadConfig(options: LoadOptions = {}): Promise<ProxyConfig> {
  const env = options.env ?? (globalThis as { process?: { env: Env } }).process?.env ?? {};
  let raw: Record<string, unknown> = toRaw(DEFAULT_CONFIG);
  const path = env['LONGSHORE_CONFIG'];
  if (path) {
    const read = options.readFile ?? (async (p: string) => (await import('node:fs/promises')).readFile(p, 'utf8'));
    let text: string;
    try {
      text = await read(path);
    } catch (err) {
      throw new ProxyConfigError([`LONGSHORE_CONFIG: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`]);
    }
    let parsed: unknown;
    try {
      parsed = parseJsonc(text);
    } catch (err) {
      throw new ProxyConfigError([`LONGSHORE_CONFIG: ${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`]);
    }
    if (!isObject(parsed)) throw new ProxyConfigError([`LONGSHORE_CONFIG: ${path} must hold a JSON object`]);
    raw = mergeRaw(raw, parsed);
  }
  const problems: string[] = [];
  raw = applyEnv(raw, env, problems);
  if (problems.length > 0) throw new ProxyConfigError(problems);
  return parseConfig(raw, path ? path : 'config');
}

type Problem = (message: string) => void;

/** One parser per key: each reports its problems and returns the default when the value is bad. */
const KEY_PARSERS: { [K in keyof ProxyConfig]: (raw: unknown, problem: Problem) => ProxyConfig[K] } = {
  listen: parseListen,
  registries: parseRegistries,
  mirrors: (raw, problem) => parseMirrors(raw, problem).mirrors,
  authorizedMirrors: (raw, problem) => {
    if (Array.isArray(raw) && raw.every((key) => typeof key === 'string'))
      return raw.map((key: string) => normaliseHost(key, 'https') ?? key);
    problem(`authorizedMirrors must be an array of mirror keys like ["docker.io"], got ${show(raw)}`);
    return [];
  },
  mirrorsWithoutFallback: (raw, problem) => {
    if (Array.isArray(raw) && raw.every((key) => typeof key === 'string'))
      return raw.map((key: string) => normaliseHost(key, 'https') ?? key);
    problem(`mirrorsWithoutFallback must be an array of mirror keys like ["docker.io"], got ${show(raw)}`);
    return [];
  },
  foreignLayerHosts: parseForeignLayerHosts,
  tokenRealms: parseTokenRealms,
  allowLoopback: (raw, problem) => {
    if (raw === true || raw === false || raw === 'auto') return raw;
    problem(`allowLoopback must be true, false or "auto", got ${show(raw)}`);
    return 'auto';
  },
  allowedOrigins: parseAllowedOrigins,
  trustForwardedFor: (raw, problem) => {
    if (typeof raw === 'boolean') return raw;
    problem(`trustForwardedFor must be true or false, got ${show(raw)}`);
    return false;
  },
  timeouts: (raw, problem) => parseNumbers('timeouts', raw, DEFAULT_CONFIG.timeouts, 1, problem),
  limits: (raw, problem) => parseNumbers('limits', raw, DEFAULT_CONFIG.limits, 0, problem),
};

/** Keys a config written before they existed may leave out. */
const OPTIONAL_KEYS: ReadonlySet<string> = new Set([
  'authorizedMirrors',
  'mirrorsWithoutFallback',
  'foreignLayerHosts',
  'allowedOrigins',
  'trustForwardedFor',
  'timeouts',
  'limits',
]);
const KNOWN_KEYS = Object.keys(KEY_PARSERS);

/**
 * Checks and normalises a whole config object (every key present, as after merging over the
 * default; the newer keys may be left out). `source` prefixes the messages.
 */
export function parseConfig(input: unknown, source = 'config'): ProxyConfig {
  const problems: string[] = [];
  const at = (message: string) => problems.push(`${source}: ${message}`);
  if (!isObject(input)) throw new ProxyConfigError([`${source}: must be a JSON object`]);
  for (const key of Object.keys(input)) {
    if (!KNOWN_KEYS.includes(key) && !key.startsWith('$') && !key.startsWith('//')) {
      at(`unknown key "${key}" (known: ${KNOWN_KEYS.join(', ')})`);
    }
  }
  const value = <K extends keyof ProxyConfig>(key: K): ProxyConfig[K] => {
    const raw = input[key];
    if (raw === undefined && OPTIONAL_KEYS.has(key)) return structuredClone(DEFAULT_CONFIG[key]) as ProxyConfig[K];
    return KEY_PARSERS[key](raw, at);
  };
  const mirrors = value('mirrors');
  const entries = parseMirrors(input['mirrors'], () => undefined);
  const authorizedMirrors = [...new Set([...value('authorizedMirrors'), ...entries.authorized])];
  for (const key of authorizedMirrors) if (!(key in mirrors)) at(`authorizedMirrors: ${show(key)} is not a mirror key`);
  const mirrorsWithoutFallback = [...new Set([...value('mirrorsWithoutFallback'), ...entries.noFallback])];
  for (const key of mirrorsWithoutFallback) if (!(key in mirrors)) at(`mirrorsWithoutFallback: ${show(key)} is not a mirror key`);
  const config: ProxyConfig = {
    listen: value('listen'),
    registries: value('registries'),
    mirrors,
    authorizedMirrors,
    mirrorsWithoutFallback,
    foreignLayerHosts: value('foreignLayerHosts'),
    tokenRealms: value('tokenRealms'),
    allowLoopback: value('allowLoopback'),
    allowedOrigins: value('allowedOrigins'),
    trustForwardedFor: value('trustForwardedFor'),
    timeouts: value('timeouts'),
    limits: value('limits'),
  };
  if (problems.length === 0) checkLocalDestinations(config, at);
  if (problems.length > 0) throw new ProxyConfigError(problems);
  return config;
}

function parseListen(raw: unknown, problem: Problem): ProxyConfig['listen'] {
  const listen = { ...DEFAULT_CONFIG.listen };
  if (!isObject(raw)) {
    problem('listen must be an object like {"host": "127.0.0.1", "port": 8080}');
    return listen;
  }
  const host = raw['host'];
  if (typeof host !== 'string' || !/^(\[[0-9a-f:.]+\]|[0-9a-f:.]*:[0-9a-f:.]*|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)$/i.test(host)) {
    problem(`listen.host must be a host name or IP address, got ${show(host)}`);
  } else {
    listen.host = host;
  }
  const port = raw['port'];
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    problem(`listen.port must be an integer from 0 to 65535, got ${show(port)}`);
  } else {
    listen.port = port;
  }
  return listen;
}

function parseRegistries(raw: unknown, problem: Problem): RegistryEntry[] {
  const registries: RegistryEntry[] = [];
  if (!Array.isArray(raw)) {
    problem('registries must be an array of {"host": "…", "scheme": "https"} entries');
    return registries;
  }
  raw.forEach((entry: unknown, i) => {
    const parsed = parseRegistryEntry(entry, (msg) => problem(`registries[${i}]: ${msg}`));
    if (!parsed) return;
    const existing = registries.findIndex((r) => r.host === parsed.host);
    if (existing >= 0) registries[existing] = parsed;
    else registries.push(parsed);
  });
  return registries;
}

/**
 * `{"docker.io": "http://m:5000"}` or
 * `{"docker.io": {"url": "http://m:5000", "forwardAuthorization": true, "fallback": false}}`.
 */
function parseMirrors(raw: unknown, problem: Problem): { mirrors: Record<string, string>; authorized: string[]; noFallback: string[] } {
  const mirrors: Record<string, string> = {};
  const authorized: string[] = [];
  const noFallback: string[] = [];
  if (!isObject(raw)) {
    problem('mirrors must be an object like {"docker.io": "http://127.0.0.1:5000"}');
    return { mirrors, authorized, noFallback };
  }
  for (const [key, value] of Object.entries(raw)) {
    const host = normaliseHost(key, 'https');
    if (!host) {
      problem(`mirrors: key ${show(key)} must be a registry host such as "docker.io" or "ghcr.io"`);
      continue;
    }
    const entry = isObject(value) ? value : { url: value };
    for (const name of Object.keys(entry)) {
      if (name !== 'url' && name !== 'forwardAuthorization' && name !== 'fallback') {
        problem(`mirrors["${key}"]: unknown key "${name}" (known: url, forwardAuthorization, fallback)`);
      }
    }
    const origin = typeof entry['url'] === 'string' ? parseOrigin(entry['url']) : undefined;
    if (!origin) {
      problem(`mirrors["${key}"] must be an http(s) URL with no path, like "http://127.0.0.1:5000", got ${show(entry['url'])}`);
      continue;
    }
    const forward = entry['forwardAuthorization'] ?? false;
    if (typeof forward !== 'boolean') problem(`mirrors["${key}"].forwardAuthorization must be true or false, got ${show(forward)}`);
    const fallback = entry['fallback'] ?? true;
    if (typeof fallback !== 'boolean') problem(`mirrors["${key}"].fallback must be true or false, got ${show(fallback)}`);
    mirrors[host] = origin;
    if (forward === true) authorized.push(host);
    if (fallback === false) noFallback.push(host);
  }
  return { mirrors, authorized, noFallback };
}

/**
 * Foreign-layer sources as URL prefixes: `https://mcr.microsoft.com/` or a bare
 * `go.microsoft.com` (https, any path). Normalised to `origin + path` ending in `/` unless the
 * path names one file; no query, no credentials.
 */
function parseForeignLayerHosts(raw: unknown, problem: Problem): string[] {
  const out: string[] = [];
  if (!Array.isArray(raw)) {
    problem('foreignLayerHosts must be an array of URL prefixes like "https://mcr.microsoft.com/"');
    return out;
  }
  raw.forEach((item: unknown, i) => {
    const prefix = typeof item === 'string' ? normaliseForeignPrefix(item) : undefined;
    if (!prefix)
      problem(`foreignLayerHosts[${i}] must be an http(s) URL prefix like "https://mcr.microsoft.com/" or a host name, got ${show(item)}`);
    else if (!out.includes(prefix)) out.push(prefix);
  });
  return out;
}

/** `go.microsoft.com` → `https://go.microsoft.com/`; `http://127.0.0.1:9/layers` kept; or undefined. */
export function normaliseForeignPrefix(text: string): string | undefined {
  const trimmed = text.trim();
  const withScheme = /^[a-z]+:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  if (url.username || url.password || url.search || url.hash) return undefined;
  return `${url.origin}${url.pathname}`;
}

function parseTokenRealms(raw: unknown, problem: Problem): string[] {
  const tokenRealms: string[] = [];
  if (!Array.isArray(raw)) {
    problem('tokenRealms must be an array of URLs like "https://auth.docker.io/token"');
    return tokenRealms;
  }
  raw.forEach((realm: unknown, i) => {
    const normalised = typeof realm === 'string' ? normaliseRealm(realm) : undefined;
    if (!normalised) problem(`tokenRealms[${i}] must be an http(s) URL without query or credentials, got ${show(realm)}`);
    else if (!tokenRealms.includes(normalised)) tokenRealms.push(normalised);
  });
  return tokenRealms;
}

/** Origins as a browser sends them (`https://app.example`, `http://127.0.0.1:8080`), or `*`. */
function parseAllowedOrigins(raw: unknown, problem: Problem): string[] {
  const origins: string[] = [];
  if (!Array.isArray(raw)) {
    problem('allowedOrigins must be an array of origins like "https://app.example"');
    return origins;
  }
  raw.forEach((item: unknown, i) => {
    const origin = item === '*' ? '*' : typeof item === 'string' ? parseOrigin(item) : undefined;
    if (!origin)
      problem(`allowedOrigins[${i}] must be "*" or an http(s) origin with no path, like "https://app.example", got ${show(item)}`);
    else if (!origins.includes(origin)) origins.push(origin);
  });
  return origins;
}

/** An object of non-negative integers, each key known from `defaults`; missing keys keep theirs. */
function parseNumbers<T extends object>(name: string, raw: unknown, defaults: Readonly<T>, min: number, problem: Problem): T {
  const out = { ...defaults } as Record<string, number>;
  if (!isObject(raw)) {
    problem(`${name} must be an object like ${JSON.stringify(defaults)}`);
    return out as T;
  }
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in defaults)) {
      problem(`${name}: unknown key "${key}" (known: ${Object.keys(defaults).join(', ')})`);
    } else if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
      problem(`${name}.${key} must be an integer${min > 0 ? ` of at least ${min}` : ' (0 = no limit)'}, got ${show(value)}`);
    } else {
      out[key] = value;
    }
  }
  return out as T;
}

/** Fail loudly at start-up rather than refuse every request later. */
function checkLocalDestinations(config: ProxyConfig, problem: Problem): void {
  if (loopbackAllowed(config)) return;
  const why = config.allowLoopback === false ? 'allowLoopback is false' : `the server listens on ${config.listen.host}, not on loopback`;
  const check = (what: string, host: string) => {
    const kind = classifyHost(new URL(`http://${host}`).hostname);
    if (kind) problem(`${what} is a ${kind} address but ${why}; set allowLoopback: true (LONGSHORE_ALLOW_LOOPBACK=true) to allow it`);
  };
  for (const r of config.registries) check(`registry ${r.host}`, r.host);
  for (const [key, origin] of Object.entries(config.mirrors)) check(`mirror ${key} → ${origin}`, new URL(origin).host);
  for (const realm of config.tokenRealms) check(`token realm ${realm}`, new URL(realm).host);
  for (const prefix of config.foreignLayerHosts) check(`foreign layer source ${prefix}`, new URL(prefix).host);
}

/** Whether loopback/private upstreams may be reached under this config. */
export function loopbackAllowed(config: Pick<ProxyConfig, 'allowLoopback' | 'listen'>): boolean {
  if (config.allowLoopback === 'auto') return isLoopbackHost(config.listen.host);
  return config.allowLoopback;
}

export function publicConfig(config: ProxyConfig): PublicConfig {
  const hosts = [...config.registries.map((r) => r.host), ...Object.keys(config.mirrors)];
  return { proxyPath: PROXY_PATH, registries: [...new Set(hosts)] };
}

/** `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000` → normalised `host[:port]`, or undefined. */
export function normaliseHost(host: string, scheme: Scheme): string | undefined {
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?$/i.test(host)) return undefined;
  try {
    const url = new URL(`${scheme}://${host}`);
    return url.host;
  } catch {
    return undefined;
  }
}

/** A realm URL → `origin + pathname` (the form realms are compared in), or undefined. */
export function normaliseRealm(realm: string): string | undefined {
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  if (url.username || url.password || url.search || url.hash) return undefined;
  return `${url.origin}${url.pathname}`;
}

/** Strips // and /* *\/ comments outside strings, then JSON.parse. */
export function parseJsonc(text: string): unknown {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  // Trailing commas are the other habit of hand-written config.
  return JSON.parse(out.replace(/,(\s*[\]}])/g, '$1'));
}

function parseRegistryEntry(entry: unknown, problem: (msg: string) => void): RegistryEntry | undefined {
  if (typeof entry === 'string') {
    const parsed = parseRegistryUrl(entry);
    if (!parsed) problem(`${show(entry)} must be "host[:port]" or "http(s)://host[:port]"`);
    return parsed;
  }
  if (!isObject(entry)) {
    problem(`must be an object like {"host": "ghcr.io", "scheme": "https"}, got ${show(entry)}`);
    return undefined;
  }
  for (const key of Object.keys(entry)) {
    if (key !== 'host' && key !== 'scheme') problem(`unknown key "${key}" (known: host, scheme)`);
  }
  const scheme = entry['scheme'] ?? 'https';
  if (scheme !== 'http' && scheme !== 'https') {
    problem(`scheme must be "http" or "https", got ${show(scheme)}`);
    return undefined;
  }
  const rawHost = entry['host'];
  if (typeof rawHost === 'string' && /^[a-z]+:\/\//i.test(rawHost)) {
    problem(
      `host ${show(rawHost)} must not include a scheme; write {"host": "${rawHost.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '')}", "scheme": "${rawHost.split(':')[0]!.toLowerCase()}"}`,
    );
    return undefined;
  }
  const host = typeof rawHost === 'string' ? normaliseHost(rawHost, scheme) : undefined;
  if (!host) {
    problem(`host must be "hostname[:port]" such as "ghcr.io" or "127.0.0.1:5000", got ${show(rawHost)}`);
    return undefined;
  }
  return { host, scheme };
}

/** `http://127.0.0.1:5000` or bare `ghcr.io` (https) → a registry entry. */
function parseRegistryUrl(text: string): RegistryEntry | undefined {
  const trimmed = text.trim();
  if (!/^[a-z]+:\/\//i.test(trimmed)) {
    const host = normaliseHost(trimmed, 'https');
    return host ? { host, scheme: 'https' } : undefined;
  }
  const origin = parseOrigin(trimmed);
  if (!origin) return undefined;
  const url = new URL(origin);
  return { host: url.host, scheme: url.protocol === 'http:' ? 'http' : 'https' };
}

/** An http(s) URL with nothing after the authority (a trailing `/` is fine) → its origin. */
function parseOrigin(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/') return undefined;
  return url.origin;
}

function applyEnv(raw: Record<string, unknown>, env: Env, problems: string[]): Record<string, unknown> {
  const out = { ...raw };
  const listen = isObject(out['listen']) ? { ...out['listen'] } : {};
  const host = env['LONGSHORE_HOST'];
  if (host !== undefined && host !== '') listen['host'] = host;
  const port = env['LONGSHORE_PORT'];
  if (port !== undefined && port !== '') {
    if (!/^\d+$/.test(port.trim())) problems.push(`LONGSHORE_PORT must be a port number, got ${show(port)}`);
    else listen['port'] = Number(port.trim());
  }
  out['listen'] = listen;

  const registries = env['LONGSHORE_REGISTRIES'];
  if (registries) {
    // Added to the configured list (a host already listed gets the scheme given here).
    const list = Array.isArray(out['registries']) ? [...(out['registries'] as unknown[])] : [];
    for (const item of registries
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const parsed = parseRegistryUrl(item);
      if (!parsed) problems.push(`LONGSHORE_REGISTRIES: ${show(item)} must be "https://host[:port]" or "http://host[:port]"`);
      else list.push(parsed);
    }
    out['registries'] = list;
  }

  const mirrors = env['LONGSHORE_MIRRORS'];
  if (mirrors) {
    const map = isObject(out['mirrors']) ? { ...out['mirrors'] } : {};
    for (const item of mirrors
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const eq = item.indexOf('=');
      if (eq <= 0) {
        problems.push(`LONGSHORE_MIRRORS: ${show(item)} must be "registry=http(s)://mirror[:port]"`);
        continue;
      }
      map[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
    }
    out['mirrors'] = map;
  }

  const allow = env['LONGSHORE_ALLOW_LOOPBACK'];
  if (allow !== undefined && allow !== '') {
    if (allow === 'true') out['allowLoopback'] = true;
    else if (allow === 'false') out['allowLoopback'] = false;
    else if (allow === 'auto') out['allowLoopback'] = 'auto';
    else problems.push(`LONGSHORE_ALLOW_LOOPBACK must be true, false or auto, got ${show(allow)}`);
  }

  const origins = env['LONGSHORE_ALLOWED_ORIGINS'];
  if (origins) {
    // Added to the configured list.
    const list = Array.isArray(out['allowedOrigins']) ? [...(out['allowedOrigins'] as unknown[])] : [];
    out['allowedOrigins'] = [
      ...list,
      ...origins
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ];
  }

  const trust = env['LONGSHORE_TRUST_FORWARDED_FOR'];
  if (trust !== undefined && trust !== '') {
    if (trust === 'true' || trust === 'false') out['trustForwardedFor'] = trust === 'true';
    else problems.push(`LONGSHORE_TRUST_FORWARDED_FOR must be true or false, got ${show(trust)}`);
  }

  for (const [variable, [section, key]] of Object.entries(NUMBER_VARIABLES)) {
    const text = env[variable];
    if (text === undefined || text === '') continue;
    if (!/^\d+$/.test(text.trim())) {
      problems.push(`${variable} must be a whole number, got ${show(text)}`);
      continue;
    }
    out[section] = { ...(isObject(out[section]) ? out[section] : {}), [key]: Number(text.trim()) };
  }
  return out;
}

/** The numeric settings each variable sets: `[config section, key]`. */
export const NUMBER_VARIABLES: Readonly<Record<string, readonly ['timeouts' | 'limits', string]>> = {
  LONGSHORE_CONNECT_TIMEOUT_MS: ['timeouts', 'connectMs'],
  LONGSHORE_HEADERS_TIMEOUT_MS: ['timeouts', 'headersMs'],
  LONGSHORE_BODY_IDLE_TIMEOUT_MS: ['timeouts', 'bodyIdleMs'],
  LONGSHORE_POOL_WAIT_MS: ['timeouts', 'poolWaitMs'],
  LONGSHORE_MAX_CONNECTIONS: ['limits', 'maxConnections'],
  LONGSHORE_UPSTREAM_SOCKETS: ['limits', 'upstreamSocketsPerOrigin'],
  LONGSHORE_CLIENT_STREAMS: ['limits', 'clientStreams'],
  LONGSHORE_CLIENT_RATE: ['limits', 'clientRequestsPerSecond'],
  LONGSHORE_CLIENT_BURST: ['limits', 'clientBurst'],
};

/** Objects merge key by key (listen, mirrors); arrays and scalars replace. */
function mergeRaw(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? { ...current, ...value } : value;
  }
  return out;
}

function toRaw(config: Readonly<ProxyConfig>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
