// The blob fetch engine: one blob's bytes from the registry into a BlobSink, verified against its
// digest and size, surviving broken connections. A break continues from the last byte held with
// `Range: bytes=N-` (RFC 9110 §14.2); only a 206 whose Content-Range starts at N is spliced on
// (§14.4), a 200 restarts the blob from byte 0 and any other range is refused and asked again
// without Range. The SHA-256 state travels with the sink's bytes, so a resume hashes only what is
// new. Big blobs may be fetched as several concurrent ranges (parallel.ts). This is the one retry
// layer for blobs: see RetryBudget for the bound on requests per blob.
import { AbortedError, ErrorCode, LongshoreError } from '../errors.ts';
import { createHasher, digestMismatch, sizeMismatch, type Hasher } from '../digest.ts';
import type { BlobSink, Spill } from '../store/blob-store.ts';
import { fetchParallel, RangesIgnored } from './parallel.ts';
import { isRetryableStatus, retryDelayMs, type RetryPolicy } from './retry.ts';
import { bodyReadError } from './transport.ts';

/** Inclusive byte range; no `end` means to the end of the blob. */
export interface ByteRange {
  start: number;
  end?: number;
}

/** How the engine reaches one blob: a single request each time, no retries of its own. */
export interface BlobSender {
  /** One GET of the blob (or of `range`), with auth and redirects handled; network failures throw a retryable NETWORK error. */
  send(range: ByteRange | undefined, signal: AbortSignal | undefined): Promise<Response>;
  /** The typed error for a non-2xx answer (reads its body). */
  fail(response: Response): Promise<LongshoreError>;
  retry: RetryPolicy;
}

export interface ExpectedBlob {
  digest: string;
  size: number;
  label: string;
}

export interface FetchBlobOptions {
  signal?: AbortSignal;
  /** Bytes added to what is held; negative when a restart drops what was held. */
  onBytes?: (n: number) => void;
  /** See PROGRESS_CREDIT_BYTES (tests scale it down). */
  progressCreditBytes?: number;
  /** Concurrent ranges for big blobs (parallel.ts); absent or `connections` ≤ 1: one stream. */
  parallel?: ParallelOptions;
}

export interface ParallelOptions {
  /** Range requests at once for one blob. */
  connections: number;
  /** Blobs at least this big (bytes) are split. */
  threshold: number;
  /** Size of the pieces fetched in order (default DEFAULT_PIECE_BYTES in parallel.ts); a blob under N pieces is split in N equal ranges. */
  pieceBytes?: number;
  /** Pieces fetched ahead of the one the hash cursor is on, at most (default 2 × connections): bounds the spilled bytes. */
  aheadPieces?: number;
  /** Where ranges ahead of the hash cursor wait (storage, not RAM); without it, no split. */
  spill?: SpillFactory;
}

export type SpillFactory = (id: string) => Promise<Spill>;

/**
 * A broken attempt that delivered at least this many bytes costs nothing from the retry budget: a
 * flaky link that keeps making progress finishes, and the count of requests stays bounded by
 * 1 + retries + ⌊size / PROGRESS_CREDIT_BYTES⌋ per blob stream.
 */
export const PROGRESS_CREDIT_BYTES = 16 * 1024 * 1024;

/** Failed attempts of one blob, shared by its ranges; knows how long to wait before the next. */
export class RetryBudget {
  #failures = 0;
  #streak = 0;
  constructor(
    readonly policy: RetryPolicy,
    readonly credit = PROGRESS_CREDIT_BYTES,
  ) {}

  get failures(): number {
    return this.#failures;
  }

  /** Record a failed attempt that delivered `progress` bytes; false when no retry is left. */
  spend(progress: number): boolean {
    if (progress >= this.credit) {
      this.#streak = 0;
      return true;
    }
    if (this.#failures >= this.policy.retries) return false;
    this.#failures++;
    this.#streak++;
    return true;
  }

  async wait(response: Response | undefined, signal: AbortSignal | undefined): Promise<void> {
    await this.policy.sleep(retryDelayMs(response, Math.max(0, this.#streak - 1), this.policy), signal);
  }
}

/** A failure of the sink (storage), never retried here: the caller decides. */
export class SinkError extends Error {
  constructor(readonly error: unknown) {
    super('sink failed');
  }
}

/** Parses `bytes START-END/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(header: string | null): { start: number; end: number; total: number | undefined } | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/** A retryable failure carrying the answer that caused it (for Retry-After). */
class AttemptError extends Error {
  constructor(
    readonly error: LongshoreError,
    readonly response?: Response,
  ) {
    super(error.message);
  }
}

/** The range came back as something else: start over from byte 0 without Range. */
class RestartSignal extends Error {}

/**
 * Fetch `expected` into `sink`, continuing from `sink.offset` if it holds a prefix. Resolves once
 * the sink committed a verified blob; on failure the sink keeps what arrived (closed with
 * keep=true) unless the bytes were wrong (digest or size), or the sink itself failed.
 */
export async function fetchBlob(sender: BlobSender, sink: BlobSink, expected: ExpectedBlob, options: FetchBlobOptions = {}): Promise<void> {
  const { signal } = options;
  const onBytes = options.onBytes ?? (() => undefined);
  const budget = new RetryBudget(sender.retry, options.progressCreditBytes);
  let hasher: Hasher;
  try {
    const resumable = sink.offset > 0 && sink.offset <= expected.size && sink.state !== undefined;
    if (sink.offset > 0 && !resumable) await sink.reset();
    hasher = await createHasher(resumable ? sink.state : undefined);
  } catch (err) {
    await sink.close(false).catch(() => undefined);
    throw err;
  }
  const cursor: Cursor = { pos: sink.offset, hasher, sink, onBytes };
  if (cursor.pos > 0) onBytes(cursor.pos);
  const parallel = options.parallel;
  let split = parallel?.spill !== undefined && parallel.connections > 1;
  try {
    for (;;) {
      if (cursor.pos === expected.size) {
        const actual = hasher.digest();
        if (actual === expected.digest) break;
        // The bytes are wrong somewhere: nothing of them can be trusted for a resume.
        const error = digestMismatch(expected, actual);
        await restart(cursor);
        if (!budget.spend(0)) throw error;
        await budget.wait(undefined, signal);
        continue;
      }
      const from = cursor.pos;
      try {
        if (split && expected.size - from >= parallel!.threshold) await fetchParallel(sender, cursor, expected, parallel!, budget, signal);
        else await fetchFrom(sender, cursor, expected, signal);
      } catch (err) {
        if (err instanceof SinkError) throw err;
        if (err instanceof RangesIgnored) {
          // The registry or its CDN ignores Range: one stream, continuing from the cursor.
          split = false;
          continue;
        }
        if (signal?.aborted) throw new AbortedError();
        if (err instanceof RestartSignal) {
          if (!budget.spend(0))
            throw new LongshoreError(
              ErrorCode.Network,
              `The ${expected.label} could not be resumed: the server answered a range request with another range.`,
              { retryable: true },
            );
          continue;
        }
        const failure = err instanceof AttemptError ? err : new AttemptError(LongshoreError.from(err));
        if (!failure.error.retryable) throw failure.error;
        if (failure.error.code === ErrorCode.SizeMismatch) await restart(cursor);
        if (!budget.spend(cursor.pos - from)) throw failure.error;
        await budget.wait(failure.response, signal);
      }
    }
  } catch (err) {
    if (err instanceof SinkError) {
      await sink.close(false).catch(() => undefined);
      throw LongshoreError.from(err.error);
    }
    const e = signal?.aborted ? new AbortedError() : LongshoreError.from(err);
    // Verified-so-far bytes stay for a later resume, unless they are known to be wrong.
    const keep = e.code !== ErrorCode.DigestMismatch && e.code !== ErrorCode.SizeMismatch;
    await sink.close(keep).catch(() => undefined);
    throw e;
  }
  try {
    await sink.commit();
  } catch (err) {
    await sink.close(false).catch(() => undefined);
    throw LongshoreError.from(err);
  }
}

/** Where the hash cursor stands: every byte before `pos` is hashed and in the sink. */
export interface Cursor {
  pos: number;
  hasher: Hasher;
  sink: BlobSink;
  onBytes: (n: number) => void;
}

/** Hash and keep one chunk at the cursor. */
export async function advance(cursor: Cursor, chunk: Uint8Array): Promise<void> {
  cursor.hasher.update(chunk);
  cursor.pos += chunk.byteLength;
  try {
    await cursor.sink.write(chunk, () => cursor.hasher.save());
  } catch (err) {
    throw new SinkError(err);
  }
  cursor.onBytes(chunk.byteLength);
}

/** Drop everything held: the blob starts again at byte 0. */
export async function restart(cursor: Cursor): Promise<void> {
  try {
    await cursor.sink.reset();
  } catch (err) {
    throw new SinkError(err);
  }
  cursor.hasher.reset();
  cursor.onBytes(-cursor.pos);
  cursor.pos = 0;
}

/** Send one request for `range`; transient answers become AttemptErrors, others their typed error. */
export async function sendChecked(sender: BlobSender, range: ByteRange | undefined, signal: AbortSignal | undefined): Promise<Response> {
  let response: Response;
  try {
    response = await sender.send(range, signal);
  } catch (err) {
    if (signal?.aborted) throw new AbortedError();
    throw new AttemptError(LongshoreError.from(err));
  }
  // 416 to a range: the server disagrees about what is held; the caller starts over.
  if (response.ok || (range && response.status === 416)) return response;
  const error = await sender.fail(response);
  if (isRetryableStatus(response.status)) throw new AttemptError(error, response);
  throw error;
}

/** One request from the cursor to the end, spliced on if the server honoured the range. */
async function fetchFrom(sender: BlobSender, cursor: Cursor, expected: ExpectedBlob, signal: AbortSignal | undefined): Promise<void> {
  const ranged = cursor.pos > 0;
  const response = await sendChecked(sender, ranged ? { start: cursor.pos } : undefined, signal);
  if (ranged) {
    if (response.status === 416) {
      await response.body?.cancel().catch(() => undefined);
      await restart(cursor);
      throw new RestartSignal();
    }
    if (response.status === 206) {
      const got = parseContentRange(response.headers.get('content-range'));
      if (!got || got.start !== cursor.pos || got.end !== expected.size - 1 || (got.total !== undefined && got.total !== expected.size)) {
        await response.body?.cancel().catch(() => undefined);
        await restart(cursor);
        throw new RestartSignal();
      }
    } else {
      // 200: the whole blob again (Range ignored, as RFC 9110 allows); start it cleanly from 0.
      await restart(cursor);
    }
  } else if (response.status === 206) {
    // A range nobody asked for: refuse it rather than guess.
    await response.body?.cancel().catch(() => undefined);
    throw new AttemptError(
      new LongshoreError(ErrorCode.Network, `The ${expected.label} was answered with a partial response to a full request.`, {
        retryable: true,
      }),
    );
  }
  const length = response.headers.get('content-length');
  if (length !== null && /^\d+$/.test(length) && Number(length) !== expected.size - cursor.pos) {
    await response.body?.cancel().catch(() => undefined);
    throw new LongshoreError(
      ErrorCode.SizeMismatch,
      `The ${expected.label} is served as ${Number(length) + cursor.pos} bytes, but its descriptor says ${expected.size}.`,
      {
        hint: 'The registry serves a different blob than the manifest describes. Nothing was kept.',
        retryable: true,
        data: { expected: expected.size, actual: Number(length) + cursor.pos, digest: expected.digest },
      },
    );
  }
  if (!response.body)
    throw new AttemptError(new LongshoreError(ErrorCode.Network, `The ${expected.label} came back without a body.`, { retryable: true }));
  await pump(response.body, cursor, expected.size, expected, signal);
  if (cursor.pos < expected.size) {
    // The body ended cleanly but early (a relay that cut it short): what came is kept and resumed.
    throw new AttemptError(
      new LongshoreError(ErrorCode.Network, `The ${expected.label} ended after ${cursor.pos} of ${expected.size} bytes.`, {
        hint: 'The transfer was cut off; it continues from the last byte received.',
        retryable: true,
        data: { received: cursor.pos, size: expected.size },
      }),
    );
  }
}

/** Read `body` into the cursor until it ends; more than `end` bytes in total is a size mismatch. */
export async function pump(
  body: ReadableStream<Uint8Array>,
  cursor: Cursor,
  end: number,
  expected: ExpectedBlob,
  signal?: AbortSignal,
): Promise<void> {
  await readBody(body, `the ${expected.label}`, signal, cursor.sink.transient === true, async (chunk) => {
    if (cursor.pos + chunk.byteLength > end) throw sizeMismatch(expected, cursor.pos + chunk.byteLength);
    await advance(cursor, chunk);
  });
}

/** The buffer a BYOB read fills: big enough that a fast link hands over few, large chunks. */
export const READ_BUFFER_BYTES = 1024 * 1024;

/**
 * Read buffers of finished bodies, for the next: a blob fetched in 32 MiB pieces is a request per
 * piece, and a new buffer per request was ~47 MB left for the collector in a 1.5 GB pull.
 */
const readBuffers: ArrayBuffer[] = [];
const READ_BUFFERS_KEPT = 8;

/** @internal How many read buffers wait for the next body (tests). */
export function keptReadBuffers(): number {
  return readBuffers.length;
}

/**
 * Read `body` chunk by chunk into `onChunk` (awaited) until it ends. `reuse` (onChunk has copied a
 * chunk once it settles): where `body` is a byte stream (a fetch body), read it with a BYOB reader
 * into one buffer passed back each time (Streams spec, ReadableStreamBYOBReader), so nothing is
 * allocated per chunk; otherwise, and for other streams, the default reader. A read failure
 * becomes a retryable NETWORK error (as guardBody's), an abort an AbortedError.
 */
export async function readBody(
  body: ReadableStream<Uint8Array>,
  what: string,
  signal: AbortSignal | undefined,
  reuse: boolean,
  onChunk: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  let byob: ReadableStreamBYOBReader | undefined;
  if (reuse) {
    try {
      byob = body.getReader({ mode: 'byob' });
    } catch {
      // Not a byte stream: the default reader.
    }
  }
  const reader = byob ?? body.getReader();
  let buffer = byob ? (readBuffers.pop() ?? new ArrayBuffer(READ_BUFFER_BYTES)) : new ArrayBuffer(0);
  const read = async (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    try {
      if (!byob) return await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
      const result = await byob.read(new Uint8Array(buffer));
      // The buffer was transferred into the read and comes back as the result's.
      if (result.value) buffer = result.value.buffer as ArrayBuffer;
      return result;
    } catch (err) {
      throw bodyReadError(err, what, signal, 'The transfer was cut off; it continues from the last byte received.');
    }
  };
  try {
    for (;;) {
      const { done, value } = await read();
      if (value && value.byteLength > 0) await onChunk(value);
      if (done) return;
    }
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    throw err;
  } finally {
    reader.releaseLock();
    // Whole again once the last chunk was handled (a read that failed may have kept it: detached).
    if (byob && buffer.byteLength === READ_BUFFER_BYTES && readBuffers.length < READ_BUFFERS_KEPT) readBuffers.push(buffer);
  }
}
