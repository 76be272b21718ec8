// Retry with jittered exponential backoff for transient registry answers: 429 (honouring
// Retry-After), 5xx and network failures. This is the only retry layer: manifests and tokens go
// through fetchWithRetry, blobs through the resumable fetch (blob-fetch.ts), never both. Clock,
// sleep and randomness are injected so tests need no real waiting.
import { AbortedError, throwIfAborted } from '../errors.ts';

export interface RetryPolicy {
  /** Further attempts after the first (default 3). */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  now: () => number;
  /** Uniform in [0, 1): spreads the waits of clients that failed together (default Math.random). */
  random: () => number;
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: 3,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  sleep: abortableSleep,
  now: () => Date.now(),
  random: () => Math.random(),
};

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function isRetryableStatus(status: number): boolean {
  // 508: longshore's proxy found a loop (a registry redirecting to the proxy itself); it will not fix itself.
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505 && status !== 508);
}

/** Delay asked for by a Retry-After header (seconds or HTTP date), in ms; undefined if absent. */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Wait before retry number `attempt + 1`: exponential, capped, with "equal jitter" (half fixed,
 * half random), so tabs and layer workers that failed at the same moment do not come back in step
 * (AWS Architecture Blog, "Exponential Backoff And Jitter").
 */
export function backoffMs(attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs' | 'random'>): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.round(ceiling / 2 + (ceiling / 2) * policy.random());
}

/** The wait a retryable answer asks for: its Retry-After (capped at maxDelayMs), else the backoff. */
export function retryDelayMs(response: Response | undefined, attempt: number, policy: RetryPolicy): number {
  const asked = response ? retryAfterMs(response.headers.get('retry-after'), policy.now()) : undefined;
  return Math.min(asked ?? backoffMs(attempt, policy), policy.maxDelayMs);
}

/**
 * Runs `attempt` until it returns a response that is not retryable, the retries are spent, or the
 * signal fires. Network errors (TypeError from fetch) are retried too. The last response or
 * error is what the caller sees.
 */
export async function fetchWithRetry(attempt: () => Promise<Response>, policy: RetryPolicy, signal?: AbortSignal): Promise<Response> {
  for (let i = 0; ; i++) {
    throwIfAborted(signal);
    let response: Response;
    try {
      response = await attempt();
    } catch (err) {
      if (signal?.aborted) throw new AbortedError();
      if (i >= policy.retries || !(err instanceof TypeError)) throw err;
      await policy.sleep(backoffMs(i, policy), signal);
      continue;
    }
    if (!isRetryableStatus(response.status) || i >= policy.retries) return response;
    const wait = retryDelayMs(response, i, policy);
    await response.body?.cancel().catch(() => undefined);
    await policy.sleep(wait, signal);
  }
}
