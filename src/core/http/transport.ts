// The injected HTTP contract. Core code never imports a fetch implementation: the caller passes
// one (globalThis.fetch in a Worker or Node, a fake in tests) and, in the browser, a URL rewrite
// that routes every request through the CORS proxy.

import { AbortedError, ErrorCode, LongshoreError } from '../errors.ts';
import { concatBytes } from '../bytes.ts';

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface Transport {
  fetch: FetchLike;
  /** Maps an absolute upstream URL to the URL actually fetched (e.g. through a proxy). */
  rewrite?: (url: string) => string;
  /**
   * Headers added to the resumable engine's blob requests only (blob-fetch.ts): their bodies are
   * checked against the descriptor's size and digest, so a body that ends short is caught there.
   */
  blobHeaders?: Readonly<Record<string, string>>;
}

/**
 * longshore's proxy relays a registry's WWW-Authenticate under this name, because browsers open
 * a sign-in prompt for `WWW-Authenticate: Basic` on fetch answers (src/proxy/handler.ts).
 */
export const PROXY_CHALLENGE_HEADER = 'x-longshore-www-authenticate';

/** The auth challenge of a response, whether it came straight from a registry or via the proxy. */
export function challengeOf(response: Response): string | null {
  return response.headers.get('www-authenticate') ?? response.headers.get(PROXY_CHALLENGE_HEADER);
}

/**
 * Asks longshore's proxy to end a blob body cleanly when its upstream breaks off mid-body
 * (`x-longshore-on-cut: end`), instead of cutting the client's connection. A browser drops what it
 * still holds of a body that failed (Chromium: the unread bytes of the body's data pipe, up to
 * megabytes when the reader lags), and those would be fetched again; a clean short end hands over
 * every byte that reached the browser, and the resumable engine, which knows the size, continues
 * with Range. The proxy then answers without Content-Length (chunked), so the early end is clean.
 */
export const PROXY_ON_CUT_HEADER = 'x-longshore-on-cut';

/** The transport of a browser client that reaches registries through longshore's proxy at `base`. */
export function proxyTransport(fetch: FetchLike, base: string): Transport {
  return { fetch, rewrite: proxyRewrite(base), blobHeaders: { [PROXY_ON_CUT_HEADER]: 'end' } };
}

/**
 * Route shape of longshore's CORS proxy: `SCHEME://HOST[:PORT]/PATH?QUERY` becomes
 * `<base>/proxy/HOST[:PORT]/PATH?QUERY`. The proxy picks the upstream scheme from its config.
 */
export function proxyRewrite(base: string): (url: string) => string {
  const prefix = `${base.replace(/\/+$/, '')}/proxy/`;
  return (url) => {
    const u = new URL(url);
    return `${prefix}${u.host}${u.pathname}${u.search}`;
  };
}

/** What a failed body read means: ABORTED when the signal fired, else a typed, retryable NETWORK error. */
export function bodyReadError(err: unknown, what: string, signal: AbortSignal | undefined, hint: string): LongshoreError {
  if (signal?.aborted) return new AbortedError();
  if (err instanceof LongshoreError) return err;
  return new LongshoreError(
    ErrorCode.Network,
    `The connection broke while downloading ${what}: ${(err as Error)?.message ?? String(err)}`,
    {
      hint,
      retryable: true,
      cause: err,
    },
  );
}

/**
 * A response body whose read failures (a dropped connection: undici's "terminated", a browser's
 * "network error") surface as a typed, retryable NETWORK error, or ABORTED when the signal fired.
 */
export function guardBody(body: ReadableStream<Uint8Array>, what: string, signal?: AbortSignal): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read();
        } catch (err) {
          throw bodyReadError(err, what, signal, 'The transfer was cut off. Nothing partial was kept; try again.');
        }
        if (result.done) controller.close();
        else controller.enqueue(result.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/** Read a body up to `limit` bytes; returns undefined past the limit (the rest is cancelled). */
export async function readCapped(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array | undefined> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => undefined);
        return undefined;
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(chunks, total);
}
