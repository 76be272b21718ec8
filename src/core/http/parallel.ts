// Parallel ranges for one big blob (as containerd 2.1's multipart fetch): the rest of the blob is
// split into N contiguous ranges fetched at once. The first range streams through the hash cursor
// into the sink; the others go to spills (storage, not RAM) and are read back, hashed and appended
// in order once the cursor reaches them. Each range resumes on its own after a break; all share
// one retry budget. A server that ignores Range (200) makes the whole blob fall back to one stream.
import { AbortedError, ErrorCode, LongshoreError } from '../errors.ts';
import type { Spill } from '../store/blob-store.ts';
import {
  SinkError,
  parseContentRange,
  pump,
  readBody,
  sendChecked,
  type BlobSender,
  type Cursor,
  type ExpectedBlob,
  type ParallelOptions,
  type RetryBudget,
} from './blob-fetch.ts';

/** The server answered a range with the whole blob: fetch it as one stream instead. */
export class RangesIgnored extends Error {}

interface Part {
  start: number;
  /** Inclusive. */
  end: number;
  spill?: Spill;
  done: Promise<void>;
  /** Its spilled bytes passed the hash cursor (they were reported as they arrived). */
  readBack?: boolean;
}

/** Contiguous ranges covering [from, size), at most `n`, none smaller than `minBytes`. */
export function splitRanges(from: number, size: number, n: number, minBytes = 1): { start: number; end: number }[] {
  const total = size - from;
  const count = Math.max(1, Math.min(n, Math.floor(total / Math.max(1, minBytes))));
  const step = Math.ceil(total / count);
  const out: { start: number; end: number }[] = [];
  for (let start = from; start < size; start += step) out.push({ start, end: Math.min(size, start + step) - 1 });
  return out;
}

export async function fetchParallel(
  sender: BlobSender,
  cursor: Cursor,
  expected: ExpectedBlob,
  options: ParallelOptions,
  budget: RetryBudget,
  outer: AbortSignal | undefined,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  outer?.addEventListener('abort', onAbort, { once: true });
  const signal = stop.signal;
  const ranges = splitRanges(cursor.pos, expected.size, options.connections, Math.ceil(options.threshold / options.connections));
  const parts: Part[] = [];
  let first: unknown;
  try {
    for (const [i, r] of ranges.entries()) {
      const spill = i === 0 ? undefined : await options.spill!(`${expected.digest}:${r.start}`);
      const part: Part = { ...r, ...(spill ? { spill } : {}), done: Promise.resolve() };
      part.done = fetchRange(sender, part, cursor, expected, budget, signal);
      // The first failure stops the others: their bytes are discarded below.
      part.done.catch((err: unknown) => {
        first ??= err;
        stop.abort();
      });
      parts.push(part);
    }
    for (const part of parts) {
      await part.done;
      if (!part.spill) continue;
      // Read back what was stored ahead of the cursor, hash it and keep it, in order.
      let stored: ReadableStream<Uint8Array>;
      try {
        stored = await part.spill.read();
      } catch (err) {
        throw new SinkError(err);
      }
      // Reported when they arrived: not again as they pass the cursor. Each chunk read back still
      // says the blob is moving (onBytes(0)): reading back and hashing three quarters of a 5 GB
      // layer takes longer than the page's stall bound, which counted it as a hang.
      const quiet: Cursor = { ...cursor, onBytes: () => cursor.onBytes(0) };
      await pump(stored, quiet, part.end + 1, expected);
      cursor.pos = quiet.pos;
      part.readBack = true;
      await part.spill.discard();
    }
  } catch (err) {
    stop.abort();
    await Promise.allSettled(parts.map((p) => p.done));
    // The failure that stopped the others, not the cancellations it caused.
    throw outer?.aborted ? new AbortedError() : (first ?? err);
  } finally {
    outer?.removeEventListener('abort', onAbort);
    for (const p of parts) if (p.spill && !p.readBack) cursor.onBytes(-p.spill.size);
    await Promise.allSettled(parts.map((p) => p.spill?.discard()));
  }
}

/** One range to its end, resumed after breaks: into the cursor (first part) or its spill. */
async function fetchRange(
  sender: BlobSender,
  part: Part,
  cursor: Cursor,
  expected: ExpectedBlob,
  budget: RetryBudget,
  signal: AbortSignal,
): Promise<void> {
  const held = () => (part.spill ? part.start + part.spill.size : cursor.pos);
  for (;;) {
    const from = held();
    if (from > part.end) return;
    try {
      const response = await sendChecked(sender, { start: from, end: part.end }, signal);
      if (response.status !== 206) {
        await response.body?.cancel().catch(() => undefined);
        throw new RangesIgnored();
      }
      const got = parseContentRange(response.headers.get('content-range'));
      if (
        !got ||
        got.start !== from ||
        got.end !== part.end ||
        (got.total !== undefined && got.total !== expected.size) ||
        !response.body
      ) {
        await response.body?.cancel().catch(() => undefined);
        throw new RangesIgnored();
      }
      if (part.spill) await spillBody(response.body, part.spill, part.end - from + 1, cursor.onBytes, `the ${expected.label}`, signal);
      else await pump(response.body, cursor, part.end + 1, expected, signal);
      if (held() <= part.end)
        throw new LongshoreError(ErrorCode.Network, `A range of the ${expected.label} ended early.`, { retryable: true });
      return;
    } catch (err) {
      if (err instanceof RangesIgnored || err instanceof SinkError || signal.aborted) throw err;
      const e = LongshoreError.from(err);
      const response = (err as { response?: Response }).response;
      const error = (err as { error?: LongshoreError }).error ?? e;
      if (!error.retryable) throw err;
      if (!budget.spend(held() - from)) throw error;
      await budget.wait(response, signal);
    }
  }
}

async function spillBody(
  body: ReadableStream<Uint8Array>,
  spill: Spill,
  limit: number,
  onBytes: (n: number) => void,
  what: string,
  signal: AbortSignal,
): Promise<void> {
  let seen = 0;
  await readBody(body, what, signal, spill.transient === true, async (chunk) => {
    seen += chunk.byteLength;
    if (seen > limit) throw new LongshoreError(ErrorCode.SizeMismatch, 'A range came back longer than asked.', { retryable: true });
    try {
      await spill.write(chunk);
    } catch (err) {
      throw new SinkError(err);
    }
    onBytes(chunk.byteLength);
  });
}
