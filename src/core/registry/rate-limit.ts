// What a registry says about its limits, as the requests pass: Docker Hub's
// `RateLimit-Limit: 100;w=21600` / `RateLimit-Remaining: 76;w=21600` (IETF draft
// "RateLimit header fields for HTTP", policy syntax), and a 429/503 with `Retry-After` that the
// retry policy (http/retry.ts) is about to wait out. A transport decorator reports them, so the
// client itself stays unaware and the page can show a countdown while the pull goes on by itself.
import { defaultRetryPolicy, retryAfterMs } from '../http/retry.ts';
import type { Transport } from '../http/transport.ts';

export interface RateLimitNotice {
  type: 'rate-limit';
  /** The host the limit was reported by ('registry-1.docker.io'). */
  registry: string;
  limit: number;
  remaining: number;
  /** The window the limit counts over (`w=`), in seconds, when given. */
  windowSeconds?: number;
}

export interface RetryWaitNotice {
  type: 'retry-wait';
  registry: string;
  status: number;
  /** Epoch ms (the clock given to observeRegistry) when the retry will be sent. */
  until: number;
}

/**
 * Which one answered for a registry that longshore's proxy mirrors (its X-Longshore-Served-By):
 * the mirror, or the registry itself because the mirror was down, lacked the content or refused.
 */
export interface MirrorNotice {
  type: 'mirror';
  registry: string;
  servedBy: 'mirror' | 'upstream';
  /** The mirror's host (`127.0.0.1:5001`). */
  mirror: string;
  reason?: 'down' | 'missing' | 'unauthorized';
}

export type RegistryNotice = RateLimitNotice | RetryWaitNotice | MirrorNotice;

/** The proxy's mirror headers (src/proxy/handler.ts), as a notice; undefined without them. */
export function parseMirror(registry: string, headers: Headers): MirrorNotice | undefined {
  const servedBy = headers.get('x-longshore-served-by');
  const mirror = headers.get('x-longshore-mirror');
  if ((servedBy !== 'mirror' && servedBy !== 'upstream') || !mirror) return undefined;
  const reason = headers.get('x-longshore-mirror-fallback');
  const known = reason === 'down' || reason === 'missing' || reason === 'unauthorized' ? reason : undefined;
  return { type: 'mirror', registry, servedBy, mirror, ...(servedBy === 'upstream' && known ? { reason: known } : {}) };
}

/** One RateLimit-* value: the leading number, and the `w=` window of its policy if present. */
function parsePolicy(value: string | null): { n: number; w?: number } | undefined {
  const m = /^\s*(\d+)\s*(?:;(.*))?$/.exec(value ?? '');
  if (!m) return undefined;
  const w = /(?:^|;)\s*w\s*=\s*(\d+)/.exec(m[2] ?? '')?.[1];
  return w === undefined ? { n: Number(m[1]) } : { n: Number(m[1]), w: Number(w) };
}

export function parseRateLimit(registry: string, headers: Headers): RateLimitNotice | undefined {
  const limit = parsePolicy(headers.get('ratelimit-limit'));
  const remaining = parsePolicy(headers.get('ratelimit-remaining'));
  if (!limit || !remaining) return undefined;
  const w = remaining.w ?? limit.w;
  return { type: 'rate-limit', registry, limit: limit.n, remaining: remaining.n, ...(w !== undefined ? { windowSeconds: w } : {}) };
}

/** The registry a (possibly proxied, `/proxy/HOST/…`) URL addresses. */
function registryOf(url: string): string {
  const u = new URL(url);
  return /^\/proxy\/([^/]+)\//.exec(u.pathname)?.[1] ?? u.host;
}

export interface ObserveOptions {
  now?: () => number;
  /** The longest wait the retry policy takes (it caps Retry-After there too). */
  maxDelayMs?: number;
}

/** Wraps a transport so that `onNotice` hears every limit a registry reports. */
export function observeRegistry(transport: Transport, onNotice: (notice: RegistryNotice) => void, options: ObserveOptions = {}): Transport {
  const now = options.now ?? (() => Date.now());
  const maxDelay = options.maxDelayMs ?? defaultRetryPolicy.maxDelayMs;
  // One mirror notice per change, not one per request.
  const lastMirror = new Map<string, string>();
  return {
    ...transport,
    fetch: async (input, init) => {
      const response = await transport.fetch(input, init);
      const registry = registryOf(input);
      const limit = parseRateLimit(registry, response.headers);
      if (limit) onNotice(limit);
      const mirror = parseMirror(registry, response.headers);
      if (mirror) {
        const key = `${mirror.servedBy} ${mirror.mirror} ${mirror.reason ?? ''}`;
        if (lastMirror.get(registry) !== key) {
          lastMirror.set(registry, key);
          onNotice(mirror);
        }
      }
      if (response.status === 429 || response.status === 503) {
        const wait = retryAfterMs(response.headers.get('retry-after'), now());
        if (wait !== undefined)
          onNotice({ type: 'retry-wait', registry, status: response.status, until: now() + Math.min(wait, maxDelay) });
      }
      return response;
    },
  };
}
