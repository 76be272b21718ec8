// The archive written behind the hash cursor: while a layer worker fetches a blob into its staged
// file, the pull worker's writer, whose turn in the archive that blob is, reads the bytes the
// cursor has passed (hashed, in order) as they come, instead of waiting for the whole blob to be
// verified and then copying it (for a multi-GB layer that copy came after the last byte: seconds).
// Nothing becomes final early: the destinations only make the file final when the pull succeeded
// (save/destination.ts), and a blob that fails its digest fails the pull, which aborts them.
//
// The two halves talk over their own MessagePort (one per followed blob), with credit: the layer
// worker sends at most what the writer granted, so a slow disk holds no bytes in memory.
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import type { Spill } from '../core/store/blob-store.ts';

/** A partial whose hashed bytes can be read while it is being written (OpfsPartial). */
export interface FollowablePartial {
  /** Bytes hashed and written so far. */
  readonly offset: number;
  /** The blob's size: once all of it is written, the last part chunk goes without the flush delay. */
  readonly size?: number;
  /** 'committing': verified, being kept as a blob ('committed' once kept); 'closed': given up (failure or cancel). */
  readonly phase: 'open' | 'committing' | 'committed' | 'closed';
  /** Reads bytes before `offset` at `at` into `into`; returns how many. Only while 'open'. */
  readAt(into: Uint8Array, at: number): number;
  /** `listener` runs after each write, restart, commit or close; returns the unsubscribe. */
  watch(listener: () => void): () => void;
}

export function isFollowable(partial: object): partial is FollowablePartial {
  return (
    typeof (partial as Partial<FollowablePartial>).readAt === 'function' &&
    typeof (partial as Partial<FollowablePartial>).watch === 'function'
  );
}

/**
 * Layer worker → writer. `verified`: the blob is committed; bytes from `sent` on are to be copied
 * from the store. `piece`: bytes [start, start + b.size) of the blob, complete in a spill (a range
 * fetched ahead of the hash cursor), as a disk-backed Blob the writer places itself and then
 * answers `piece-done` (only to a writer that asked for pieces: one that can write anywhere).
 */
export type FromTail =
  | { t: 'bytes'; b: Uint8Array; at: number }
  | { t: 'piece'; id: number; start: number; b: Blob }
  | { t: 'verified'; sent: number }
  | { t: 'failed'; message: string };
/**
 * Writer → layer worker: credit, with the buffer of a chunk written (if it was not transferred on)
 * to fill again; `pieces` (first credit only): it takes pieces. `piece-done`: that piece is written
 * (or given up): its spill may be written again.
 */
export type ToTail = { t: 'credit'; n: number; b?: ArrayBuffer; pieces?: boolean } | { t: 'piece-done'; id: number } | { t: 'cancel' };

/** A spill whose bytes can be read as a disk-backed Blob (OPFS, idb-store.ts). */
export type SnapshotSpill = Spill & { snapshot(): Promise<Blob> };

function canSnapshot(spill: Spill): spill is SnapshotSpill {
  return typeof (spill as Partial<SnapshotSpill>).snapshot === 'function';
}

/** Takes a completed piece (blob offset, bytes); resolves once it is written, or undefined when not taken. */
type PieceTaker = (start: number, blob: Blob) => Promise<void> | undefined;

/**
 * Largest chunk sent at once. Each is one write to the destination (a picked file's write is an
 * IPC and a copy in the browser): at 1 MiB a 6 GB pull on loopback took 118 s with the file 36 s
 * behind the last byte; at 4 MiB, 72 s and 10.6 s (README, Performance).
 */
export const TAIL_CHUNK_BYTES = 4 * 1024 * 1024;
/** Bytes the writer lets the layer worker send ahead of what it has written. */
export const TAIL_CREDIT_BYTES = 16 * 1024 * 1024;
/**
 * Less than a whole chunk waits this long for more before it goes. The partial grows by one
 * network read at a time (64 KiB to 1 MiB): sending each at once made a message, and a 4 MiB
 * buffer in flight, per read, 133–142 MB of buffers in a 1.5 GB pull's layer workers. A link
 * faster than 40 MB/s fills a chunk within it; a slower one still sees its bytes saved ten times a
 * second.
 */
export const TAIL_FLUSH_MS = 100;

/** Chunk buffers the writers gave back, for the next chunk of any tail in this worker. */
const spare: ArrayBuffer[] = [];
const SPARE_MAX = (2 * TAIL_CREDIT_BYTES) / TAIL_CHUNK_BYTES;

/**
 * The layer worker's record of one job, for tails: the partial it writes (once opened), and how
 * the job ended. A tail asked before the partial exists waits for it.
 */
export class LiveJob {
  #partial: FollowablePartial | undefined;
  #ended: { ok: boolean; message?: string } | undefined;
  readonly #listeners = new Set<() => void>();
  /** Tails whose writers take pieces (a picked file). */
  readonly #takers = new Set<PieceTaker>();
  /**
   * Pieces being fetched into a spill (start → end): a tail whose writer takes pieces waits for
   * such a piece and its copy from storage rather than sending its bytes as the hash cursor passes
   * them (bytes written to a picked file cost Chromium a fresh data pipe per write: two to three
   * page faults per 4 KiB, tests/repro/writable-chunks.ts; a 32 MiB piece copied by the browser file
   * to file about one, and no work in JS).
   */
  readonly #pending = new Map<number, number>();

  /** The first piece still being fetched that overlaps [from, ∞): where a piece-taking tail stops. */
  pendingFrom(from: number): { start: number; end: number } | undefined {
    let best: { start: number; end: number } | undefined;
    for (const [start, end] of this.#pending) if (end > from && (!best || start < best.start)) best = { start, end };
    return best;
  }

  /**
   * `spill` as this job's parallel ranges use it: a range it completes is offered to the tails
   * whose writers take pieces (copied by the browser from storage into its place in the file,
   * instead of passing through here again behind the hash cursor); its reset() waits until they
   * are done with it, as writing it again would void their snapshot.
   */
  watchSpill(spill: Spill): Spill {
    if (!canSnapshot(spill)) return spill;
    let copies: Promise<unknown>[] = [];
    /** The piece this spill holds now, while the tails wait for it. */
    let piece: number | undefined;
    const settled = () => {
      if (piece === undefined) return;
      this.#pending.delete(piece);
      piece = undefined;
      this.#changed();
    };
    const watched: Spill = {
      ...(spill.transient ? { transient: true } : {}),
      get size() {
        return spill.size;
      },
      write: (chunk) => spill.write(chunk),
      read: () => spill.read(),
      ...(spill.readFrom ? { readFrom: (from: number, to: number) => spill.readFrom!(from, to) } : {}),
      assigned: (start, end) => {
        settled();
        piece = start;
        this.#pending.set(start, end);
      },
      completed: (start) => {
        if (this.#takers.size === 0 || spill.size === 0) return settled();
        copies.push(
          spill.snapshot().then(
            (blob) => {
              const writes = Promise.all([...this.#takers].map((take) => take(start, blob)));
              // Taken: the tails skip these bytes now, they need not wait for them.
              settled();
              return writes;
            },
            // No snapshot: the tail sends these bytes behind the hash cursor as before.
            () => settled(),
          ),
        );
      },
      ...(spill.reset
        ? {
            reset: async () => {
              const pending = copies;
              copies = [];
              await Promise.all(pending);
              await spill.reset!();
            },
          }
        : {}),
      // On failure the pull stops: a copy still reading this spill fails with it.
      discard: () => {
        settled();
        return spill.discard();
      },
    };
    return watched;
  }

  attach(partial: object): void {
    if (!isFollowable(partial) || this.#partial) return;
    this.#partial = partial;
    this.#changed();
  }

  end(ok: boolean, message?: string): void {
    this.#ended = { ok, ...(message !== undefined ? { message } : {}) };
    this.#changed();
  }

  #changed(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** Serve a tail on `port` until the blob is verified, the job fails, or the writer cancels. */
  follow(port: MessagePort): void {
    let credit = 0;
    let sent = 0;
    let over = false;
    /** The partial's offset as last seen: one lower means the blob started over. */
    let seen = 0;
    /** Blob ranges [start, end) the writer places itself (pieces), sorted: sent skips them. */
    const covered: [number, number][] = [];
    const pieces = new Map<number, () => void>();
    let pieceIds = 0;
    const take: PieceTaker = (start, blob) => {
      if (over) return undefined;
      // What went behind the cursor already is not sent twice.
      const from = Math.max(start, sent);
      const end = start + blob.size;
      if (from >= end) return undefined;
      const id = ++pieceIds;
      covered.push([from, end]);
      covered.sort((a, b) => a[0] - b[0]);
      const written = new Promise<void>((resolve) => pieces.set(id, resolve));
      port.postMessage({ t: 'piece', id, start: from, b: from === start ? blob : blob.slice(from - start) } satisfies FromTail);
      return written;
    };
    /** A part chunk may go now (the flush delay passed with less than a chunk waiting). */
    let flushDue = false;
    let flushTimer: ReturnType<typeof setTimeout> | undefined;
    let unwatch: (() => void) | undefined;
    const stopTimer = () => {
      if (flushTimer !== undefined) clearTimeout(flushTimer);
      flushTimer = undefined;
    };
    /** Stop serving (after `last`, the answer that ends the tail, if any). */
    const finish = (last?: FromTail) => {
      if (over) return;
      over = true;
      stopTimer();
      unwatch?.();
      this.#listeners.delete(step);
      this.#takers.delete(take);
      // Nothing more is written from the spills: they may be reused.
      for (const done of pieces.values()) done();
      pieces.clear();
      if (last) port.postMessage(last);
      port.close();
    };
    /** How the job ended, for a tail that sent nothing: the writer copies the verified blob, or fails. */
    const endedAnswer = (ended: { ok: boolean; message?: string }): FromTail =>
      ended.ok ? { t: 'verified', sent: 0 } : { t: 'failed', message: ended.message ?? 'failed' };
    const step = () => {
      if (over) return;
      const p = this.#partial;
      if (!p) {
        // No partial to follow (a cached blob, a job that decompresses, IndexedDB segments): the
        // writer waits for the verified blob as before.
        if (this.#ended) finish(endedAnswer(this.#ended));
        return;
      }
      unwatch ??= p.watch(step);
      if (p.phase === 'committed') return finish({ t: 'verified', sent });
      if (p.phase === 'committing') return;
      if (p.phase === 'closed') {
        // Given up (or found stored by another pull): bytes sent from it were never verified.
        if (sent > 0) return finish({ t: 'failed', message: this.#ended?.message ?? 'The layer download stopped.' });
        if (this.#ended) finish(endedAnswer(this.#ended));
        return;
      }
      if (p.offset < seen) {
        // The blob started over (a server that ignored Range): what was sent cannot be taken back.
        return finish({ t: 'failed', message: 'The layer started over after part of it was saved.' });
      }
      seen = p.offset;
      for (;;) {
        // Bytes the writer places itself (pieces) are skipped.
        while (covered.length > 0 && covered[0]![0] <= sent) sent = Math.max(sent, covered.shift()![1]);
        // A writer that takes pieces waits for one still being fetched into a spill (it gets it
        // from storage once complete) instead of getting its bytes from here. Not for the blob's
        // last piece: it is among the last to arrive, and copying it whole after its last byte
        // would leave the file that much longer behind (bytes sent as they are hashed leave a chunk).
        const held = this.#takers.has(take) ? this.pendingFrom(sent) : undefined;
        const pending = held && (p.size === undefined || held.end < p.size) ? held : undefined;
        if (pending && pending.start <= sent) break;
        const nextCover = Math.min(
          covered.length > 0 ? covered[0]![0] : Number.POSITIVE_INFINITY,
          pending?.start ?? Number.POSITIVE_INFINITY,
        );
        if (!(credit > 0 && p.offset > sent)) break;
        const want = Math.min(TAIL_CHUNK_BYTES, credit, p.offset - sent, nextCover - sent);
        const last = (p.size !== undefined && p.offset >= p.size && want === p.offset - sent) || want === nextCover - sent;
        if (want < TAIL_CHUNK_BYTES && !flushDue && !last) {
          flushTimer ??= setTimeout(() => {
            flushTimer = undefined;
            flushDue = true;
            step();
            flushDue = false;
          }, TAIL_FLUSH_MS);
          return;
        }
        stopTimer();
        const buffer = spare.pop() ?? new ArrayBuffer(TAIL_CHUNK_BYTES);
        const chunk = new Uint8Array(buffer, 0, want);
        let n: number;
        try {
          n = p.readAt(chunk, sent);
        } catch (err) {
          return finish({ t: 'failed', message: err instanceof Error ? err.message : String(err) });
        }
        if (n <= 0) return finish({ t: 'failed', message: `The staged file ended at ${sent} of ${p.offset} bytes.` });
        const out = chunk.subarray(0, n);
        const at = sent;
        sent += n;
        credit -= n;
        port.postMessage({ t: 'bytes', b: out, at } satisfies FromTail, [buffer]);
      }
    };
    port.onmessage = (e: MessageEvent<ToTail>) => {
      if (e.data.t === 'cancel') return finish();
      if (e.data.t === 'piece-done') {
        pieces.get(e.data.id)?.();
        pieces.delete(e.data.id);
        return;
      }
      if (e.data.pieces && !over) this.#takers.add(take);
      credit += e.data.n;
      // Kept for any tail of this worker: a steady pull allocates nothing per chunk or per layer.
      if (e.data.b?.byteLength === TAIL_CHUNK_BYTES && spare.length < SPARE_MAX) spare.push(e.data.b);
      step();
    };
    this.#listeners.add(step);
    step();
  }
}

/**
 * The writer's end of a tail: `next()` gives the blob's next bytes, or how it ended. Credit is
 * granted as bytes are taken, so at most TAIL_CREDIT_BYTES wait in memory.
 */
export class BlobTail {
  readonly #queue: FromTail[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(
    readonly port: MessagePort,
    readonly label: string,
    readonly signal?: AbortSignal,
    /** The writer places pieces itself (next() may answer `piece`). */
    pieces = false,
  ) {
    port.onmessage = (e: MessageEvent<FromTail>) => {
      this.#queue.push(e.data);
      this.#notify();
    };
    signal?.addEventListener('abort', () => this.#notify(), { once: true });
    port.postMessage({ t: 'credit', n: TAIL_CREDIT_BYTES, ...(pieces ? { pieces: true } : {}) } satisfies ToTail);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /**
   * The next bytes (`taken(bytes)` once written, which grants more and hands their buffer back),
   * or the end: the offset to copy the rest from the store.
   */
  async next(): Promise<{ bytes: Uint8Array; at: number } | { piece: { id: number; start: number; blob: Blob } } | { verified: number }> {
    for (;;) {
      this.signal?.throwIfAborted();
      const m = this.#queue.shift();
      if (!m) {
        if (this.#closed) throw new LongshoreError(ErrorCode.Internal, `The live copy of the ${this.label} ended without an answer.`);
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      switch (m.t) {
        case 'bytes':
          return { bytes: m.b, at: m.at };
        case 'piece':
          return { piece: { id: m.id, start: m.start, blob: m.b } };
        case 'verified':
          this.close();
          return { verified: m.sent };
        case 'failed':
          this.close();
          throw new LongshoreError(ErrorCode.Network, `The ${this.label} could not be saved as it arrived: ${m.message}`, {
            hint: 'Pull again: what arrived is kept, and the pull continues from there.',
            retryable: true,
          });
      }
    }
  }

  /** `bytes` (`length` of them) were written: more may come; their buffer goes back unless it was transferred on. */
  taken(bytes: Uint8Array, length: number): void {
    if (this.#closed) return;
    const buffer = bytes.buffer as ArrayBuffer;
    const back = buffer.byteLength > 0 && !(buffer as { detached?: boolean }).detached ? buffer : undefined;
    this.port.postMessage({ t: 'credit', n: length, ...(back ? { b: back } : {}) } satisfies ToTail, back ? [back] : []);
  }

  /** Piece `id` is written (or given up): its spill may be written again. */
  pieceDone(id: number): void {
    if (this.#closed) return;
    this.port.postMessage({ t: 'piece-done', id } satisfies ToTail);
  }

  /** Stop following (the writer gave up, or is done). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.port.postMessage({ t: 'cancel' } satisfies ToTail);
    } catch {
      // closed already
    }
    this.port.close();
  }
}
