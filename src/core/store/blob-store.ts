// Where verified blobs live, keyed by digest. Contract: put() commits only when the stream ends
// cleanly (a verifying stream errors instead of ending on a mismatch), so a store never holds a
// partial or corrupted blob. A store may also keep unfinished downloads (partials) apart from the
// blobs, with the hasher state after their bytes, so a broken download continues where it stopped:
// a partial is never visible through has/size/open until it is committed.

export interface BlobStore {
  has(key: string): Promise<boolean>;
  /** Byte size of a stored blob, undefined when absent. */
  size(key: string): Promise<number | undefined>;
  /** Consume `stream` and keep it under `key` once it has ended without error; returns its size. */
  put(key: string, stream: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<number>;
  open(key: string): Promise<ReadableStream<Uint8Array> | undefined>;
  delete(key: string): Promise<void>;
  /**
   * The unfinished download of `key` (created empty if there is none), held exclusively until it is
   * committed or closed. Stores without it get no resume across pulls (within a pull, a broken
   * download still continues: see blob-fetch.ts).
   */
  openPartial?(key: string, size: number, signal?: AbortSignal): Promise<PartialBlob>;
  /** Temporary storage for a range of `key` fetched ahead of the hash cursor (parallel ranges). */
  createSpill?(key: string): Promise<Spill>;
}

/** Bytes of one range, written in order, read back once, then discarded; never a blob. */
export interface Spill {
  /** write() has copied the chunk once it settles (see BlobSink.transient). */
  readonly transient?: boolean;
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly size: number;
  /** Everything written, in order (call once, after the last write). */
  read(): Promise<ReadableStream<Uint8Array>>;
  /**
   * Bytes [from, to) already written, while writing may go on: the hash cursor reads a range as it
   * arrives instead of after its last byte. Absent: only read() once the range is complete. The
   * caller reads each range to its end before asking for the next, and is done with a chunk before
   * reading the next: chunks may be views of one buffer, refilled.
   */
  readFrom?(from: number, to: number): ReadableStream<Uint8Array>;
  /**
   * The spill is to hold bytes [start, end) of the blob (a piece fetched ahead of the hash cursor),
   * told before its first write: a destination that copies completed pieces from storage can wait
   * for this one instead of taking its bytes another way. Optional.
   */
  assigned?(start: number, end: number): void;
  /**
   * The range is complete: the spill holds bytes [start, start + size) of the blob and takes no
   * more writes until reset() or discard(). A destination may copy them from storage meanwhile
   * (then reset() waits for that copy). Optional, for stores that can offer it.
   */
  completed?(start: number): void;
  /** Forget the bytes (after they were read back, or on failure); safe to call twice. */
  discard(): Promise<void>;
  /**
   * Forget the bytes but keep the storage, to hold another range (its next write is byte 0
   * again): a blob fetched in many pieces reuses a few spills instead of making one per piece.
   * Absent: the spill is discarded and another made.
   */
  reset?(): Promise<void>;
}

/**
 * Bytes of one blob arriving in order, from byte 0. The writer hashes each chunk before writing it
 * and hands `state` to read the hasher's state after that chunk; a store that persists bytes saves
 * that state with them, so `offset` and `state` always describe the same prefix.
 */
export interface BlobSink {
  /** Bytes already held (a resumed download), and the hasher state after them (undefined at 0). */
  readonly offset: number;
  readonly state: Uint8Array | undefined;
  /**
   * write() has copied the chunk (to disk) once it settles and keeps no reference to it: the
   * fetcher may then read the next bytes into the same memory, so a steady download allocates
   * nothing per chunk. Absent: the sink may hold chunks, each must be fresh.
   */
  readonly transient?: boolean;
  write(chunk: Uint8Array, state: () => Uint8Array): Promise<void>;
  /** Forget every byte held: the next write is byte 0 again. */
  reset(): Promise<void>;
  /** Every byte arrived and the digest matched: make it a blob. */
  commit(): Promise<void>;
  /**
   * Give up for now. `keep`: persist what arrived (with its hasher state) for a later resume;
   * otherwise drop it all (a digest mismatch).
   */
  close(keep: boolean): Promise<void>;
}

export type PartialBlob = BlobSink;

/** An unfinished download, as stores list them. */
export interface PartialInfo {
  key: string;
  /** Bytes stored and hashed so far: a resume asks for `bytes=<done>-`. */
  done: number;
  /** The blob's size from its descriptor. */
  total: number;
  /** Milliseconds since the epoch of its last write. */
  updatedAt: number;
}

/**
 * Read `stream` to its end, handing each chunk to `onChunk` (awaited, so a slow sink holds the
 * reader back); the signal cancels the read. Returns the byte count; throws if aborted. Stores
 * call this from put() and commit only after it returned.
 */
export async function drain(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
  onChunk: (chunk: Uint8Array) => void | Promise<void>,
): Promise<number> {
  let total = 0;
  const reader = stream.getReader();
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      await onChunk(value);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  signal?.throwIfAborted();
  return total;
}

/** An in-memory store for tests and the Node CLI. */
export class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<string, Uint8Array[]>();
  readonly #partials = new Map<
    string,
    { chunks: Uint8Array[]; done: number; total: number; state: Uint8Array | undefined; updatedAt: number }
  >();
  /** The writer of each key; a second one waits for it, as with IdbBlobStore's locks. */
  readonly #writing = new Map<string, Promise<void>>();
  /** Bytes a partial keeps in memory before it "persists" them with a hasher state (like a store segment). */
  readonly checkpointBytes: number;

  constructor(options: { checkpointBytes?: number } = {}) {
    this.checkpointBytes = options.checkpointBytes ?? 64 * 1024;
  }

  async openPartial(key: string, size: number): Promise<PartialBlob> {
    while (this.#writing.has(key)) await this.#writing.get(key);
    let release!: () => void;
    this.#writing.set(key, new Promise<void>((r) => (release = r)));
    const partials = this.#partials;
    let held = partials.get(key);
    if (held && held.total !== size) held = undefined;
    const saved = held ?? { chunks: [], done: 0, total: size, state: undefined, updatedAt: Date.now() };
    partials.set(key, saved);
    // Chunks past the last checkpoint: lost if the writer goes away without close(true).
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let lastState: (() => Uint8Array) | undefined;
    const checkpoint = () => {
      if (!pendingBytes || !lastState) return;
      saved.chunks.push(...pending);
      saved.done += pendingBytes;
      saved.state = lastState();
      saved.updatedAt = Date.now();
      pending = [];
      pendingBytes = 0;
    };
    const writing = this.#writing;
    const done = () => {
      writing.delete(key);
      release();
    };
    return {
      get offset() {
        return saved.done + pendingBytes;
      },
      get state() {
        return pendingBytes ? lastState?.() : saved.state;
      },
      write: async (chunk, state) => {
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        lastState = state;
        if (pendingBytes >= this.checkpointBytes) checkpoint();
      },
      reset: async () => {
        pending = [];
        pendingBytes = 0;
        Object.assign(saved, { chunks: [], done: 0, state: undefined, updatedAt: Date.now() });
      },
      commit: async () => {
        this.#blobs.set(key, [...saved.chunks, ...pending]);
        partials.delete(key);
        done();
      },
      close: async (keep) => {
        if (keep) checkpoint();
        else partials.delete(key);
        done();
      },
    };
  }

  async createSpill(): Promise<Spill> {
    let chunks: Uint8Array[] = [];
    let size = 0;
    return {
      get size() {
        return size;
      },
      write: async (chunk) => {
        chunks.push(chunk);
        size += chunk.byteLength;
      },
      read: async () => {
        let i = 0;
        return new ReadableStream<Uint8Array>({ pull: (c) => (i < chunks.length ? c.enqueue(chunks[i++]!) : c.close()) });
      },
      readFrom: (from, to) => {
        const out: Uint8Array[] = [];
        let at = 0;
        for (const c of chunks) {
          const a = Math.max(from, at);
          const b = Math.min(to, at + c.byteLength);
          if (a < b) out.push(c.subarray(a - at, b - at));
          at += c.byteLength;
        }
        let i = 0;
        return new ReadableStream<Uint8Array>({ pull: (c) => (i < out.length ? c.enqueue(out[i++]!) : c.close()) });
      },
      discard: async () => {
        chunks = [];
      },
      reset: async () => {
        chunks = [];
        size = 0;
      },
    };
  }

  listPartials(): PartialInfo[] {
    return [...this.#partials]
      .filter(([, p]) => p.done > 0)
      .map(([key, p]) => ({ key, done: p.done, total: p.total, updatedAt: p.updatedAt }));
  }

  async has(key: string): Promise<boolean> {
    return this.#blobs.has(key);
  }

  async size(key: string): Promise<number | undefined> {
    return this.#blobs.get(key)?.reduce((n, c) => n + c.byteLength, 0);
  }

  async put(key: string, stream: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<number> {
    const chunks: Uint8Array[] = [];
    const total = await drain(stream, signal, (chunk) => void chunks.push(chunk));
    this.#blobs.set(key, chunks);
    return total;
  }

  async open(key: string): Promise<ReadableStream<Uint8Array> | undefined> {
    const chunks = this.#blobs.get(key);
    if (!chunks) return undefined;
    let i = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (i < chunks.length) controller.enqueue(chunks[i++]!);
        else controller.close();
      },
    });
  }

  async delete(key: string): Promise<void> {
    this.#blobs.delete(key);
  }

  keys(): string[] {
    return [...this.#blobs.keys()];
  }
}
