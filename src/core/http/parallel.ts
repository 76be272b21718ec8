// Parallel ranges for one big blob (as containerd 2.1's multipart fetch), as a sliding window of
// pieces fetched in order: N connections each take the next piece not yet asked for, at most
// `aheadPieces` past the one the hash cursor is on, so the cursor follows the network closely
// instead of waiting for N equal ranges that all end together (then three quarters of a big blob
// were hashed after its last byte arrived). The piece at the cursor when the fetch starts streams
// through the cursor into the sink; the others go to spills (storage, not RAM) and are read back,
// hashed and appended in order as soon as each is complete. Each piece resumes on its own after a
// break; all share one retry budget. A server that ignores Range (200) makes the whole blob fall
// back to one stream.
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

/**
 * Pieces of a big blob, unless configured (ParallelOptions.pieceBytes): small enough that the hash
 * cursor stays close behind the network (at most a few pieces are unhashed when the last byte
 * arrives), big enough that the round trip each piece's request costs stays a few percent of its
 * transfer (README, "Parallel ranges", has the measurements).
 */
export const DEFAULT_PIECE_BYTES = 32 * 1024 * 1024;

interface Part {
  start: number;
  /** Inclusive. */
  end: number;
  spill?: Spill;
  /** Settles when the piece is fetched (into the cursor or its spill). */
  done: Promise<void>;
  /** Fetched completely. */
  complete?: boolean;
  /** Called after each write to its spill (the cursor may be waiting to read it). */
  grew?: () => void;
  /** Its spilled bytes passed the hash cursor (they were reported as they arrived). */
  readBack?: boolean;
  /** Bytes of its spill already hashed while it arrived. */
  consumed?: number;
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

/**
 * The pieces [from, size) is fetched in: `n` equal ranges (none under `minBytes`) while they are at
 * most `pieceBytes` each, else pieces of `pieceBytes` (the last one shorter).
 */
export function splitPieces(from: number, size: number, n: number, minBytes: number, pieceBytes: number): { start: number; end: number }[] {
  const ranges = splitRanges(from, size, n, minBytes);
  if (ranges.length < n || ranges[0]!.end - ranges[0]!.start + 1 <= pieceBytes) return ranges;
  const out: { start: number; end: number }[] = [];
  for (let start = from; start < size; start += pieceBytes) out.push({ start, end: Math.min(size, start + pieceBytes) - 1 });
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
  const connections = Math.max(1, options.connections);
  const pieces = splitPieces(
    cursor.pos,
    expected.size,
    connections,
    Math.ceil(options.threshold / connections),
    Math.max(1, options.pieceBytes ?? DEFAULT_PIECE_BYTES),
  );
  const ahead = Math.max(connections, options.aheadPieces ?? 2 * connections);
  const parts: Part[] = [];
  /** Spills read back and reset, for the next pieces (Spill.reset). */
  const free: Spill[] = [];
  let first: unknown;
  let failed!: (err: unknown) => void;
  const failure = new Promise<never>((_, reject) => (failed = reject));
  failure.catch(() => undefined);
  /** Pieces before this one have passed the hash cursor. */
  let hashed = 0;
  let waiting: (() => void)[] = [];
  const windowMoved = () => new Promise<void>((resolve) => waiting.push(resolve));
  const wakeAll = () => {
    const list = waiting;
    waiting = [];
    for (const w of list) w();
  };
  // A cancel (or the first failure) ends every wait: connections return, the cursor stops.
  signal.addEventListener(
    'abort',
    () => {
      failed(outer?.aborted ? new AbortedError() : (first ?? new AbortedError()));
      wakeAll();
    },
    { once: true },
  );
  const settle: ((err?: unknown) => void)[] = [];
  for (const p of pieces) {
    const part: Part = {
      ...p,
      done: new Promise<void>((resolve, reject) => settle.push((err) => (err === undefined ? resolve() : reject(err)))),
    };
    part.done.catch(() => undefined);
    parts.push(part);
  }
  let next = 0;
  const connection = async (): Promise<void> => {
    for (;;) {
      while (next < parts.length && next - hashed > ahead && !signal.aborted) await windowMoved();
      if (next >= parts.length || signal.aborted) return;
      const k = next++;
      const part = parts[k]!;
      try {
        // The first piece starts at the cursor: it streams through it; the others wait in spills.
        if (k > 0) {
          part.spill = free.pop() ?? (await options.spill!(`${expected.digest}:${part.start}`));
          part.spill.assigned?.(part.start, part.end + 1);
        }
        await fetchRange(sender, part, cursor, expected, budget, signal);
        part.complete = true;
        part.spill?.completed?.(part.start);
        settle[k]!();
        part.grew?.();
      } catch (err) {
        settle[k]!(err);
        // The first failure stops the others: their bytes are discarded below.
        first ??= err;
        stop.abort();
        failed(err);
        return;
      }
    }
  };
  const running = Array.from({ length: Math.min(connections, parts.length) }, () => connection());
  try {
    for (const [k, part] of parts.entries()) {
      // Reported when they arrived: not again as they pass the cursor. Each chunk read back still
      // says the blob is moving (onBytes(0)): reading back and hashing a long run of pieces can
      // take longer than the page's stall bound, which would count it as a hang.
      const quiet: Cursor = { ...cursor, onBytes: () => cursor.onBytes(0) };
      // Where a spill can be read while it is written, the cursor follows the piece as it arrives
      // (the first piece streams through it anyway), so when the last byte comes little is left.
      while (k > 0 && !part.complete) {
        const spill = part.spill;
        const have = spill?.size ?? 0;
        const consumed = part.consumed ?? 0;
        if (spill && !spill.readFrom) break;
        if (spill?.readFrom && have > consumed) {
          await pump(spill.readFrom(consumed, have), quiet, part.start + have, expected);
          cursor.pos = quiet.pos;
          part.consumed = have;
          continue;
        }
        await Promise.race([new Promise<void>((resolve) => (part.grew = resolve)), part.done, failure]);
      }
      await Promise.race([part.done, failure]);
      if (part.spill) {
        // Read back what was stored ahead of the cursor (and not yet followed), hash it and keep it.
        const consumed = part.consumed ?? 0;
        if (consumed < part.spill.size) {
          let stored: ReadableStream<Uint8Array>;
          try {
            stored = part.spill.readFrom ? part.spill.readFrom(consumed, part.spill.size) : await part.spill.read();
          } catch (err) {
            throw new SinkError(err);
          }
          await pump(stored, quiet, part.end + 1, expected);
          cursor.pos = quiet.pos;
        }
        part.readBack = true;
        if (part.spill.reset) {
          await part.spill.reset();
          free.push(part.spill);
        } else await part.spill.discard();
      }
      hashed = k + 1;
      wakeAll();
    }
  } catch (err) {
    stop.abort();
    failed(err);
    await Promise.allSettled(running);
    // The failure that stopped the others, not the cancellations it caused.
    throw outer?.aborted ? new AbortedError() : (first ?? err);
  } finally {
    outer?.removeEventListener('abort', onAbort);
    for (const p of parts) if (p.spill && !p.readBack) cursor.onBytes(-(p.spill.size - (p.consumed ?? 0)));
    await Promise.allSettled([...new Set([...parts.map((p) => p.spill), ...free])].map((s) => s?.discard()));
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
      if (part.spill) {
        const onBytes = (n: number) => {
          cursor.onBytes(n);
          part.grew?.();
        };
        await spillBody(response.body, part.spill, part.end - from + 1, onBytes, `the ${expected.label}`, signal);
      } else await pump(response.body, cursor, part.end + 1, expected, signal);
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
