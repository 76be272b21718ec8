// Where verified blobs live, keyed by digest. Contract: put() commits only when the stream ends
// cleanly (a verifying stream errors instead of ending on a mismatch), so a store never holds a
// partial or corrupted blob.

export interface BlobStore {
  has(key: string): Promise<boolean>;
  /** Byte size of a stored blob, undefined when absent. */
  size(key: string): Promise<number | undefined>;
  /** Consume `stream` and keep it under `key` once it has ended without error; returns its size. */
  put(key: string, stream: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<number>;
  open(key: string): Promise<ReadableStream<Uint8Array> | undefined>;
  delete(key: string): Promise<void>;
}

/**
 * Read `stream` to its end, handing each chunk to `onChunk` (awaited, so a slow sink holds the
 * reader back); the signal cancels the read. Returns the byte count; throws if aborted. Stores
 * call this from put() and commit only after it returned.
 */
export async function drain(stream: ReadableStream<Uint8Array>, signal: AbortSignal | undefined, onChunk: (chunk: Uint8Array) => void | Promise<void>): Promise<number> {
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
