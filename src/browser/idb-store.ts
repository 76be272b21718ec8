// Verified blobs in IndexedDB (via idb-keyval), keyed by digest. Bytes arrive as a stream and are
// persisted in large Blob segments while they pass: a Blob built in JS sits in browser RAM until
// it is stored, so segments bound that, and nothing layer-sized is ever held in the JS heap.
// A blob's record is written only after its stream ended cleanly (verified); on failure the
// segments written so far are deleted, so the cache never holds partial or corrupted blobs.
import { createStore, del, delMany, get, getMany, keys, set, type UseStore } from 'idb-keyval';
import { drain, type BlobStore } from '../core/store/blob-store.ts';

interface BlobRecord {
  size: number;
  segments: string[];
  storedAt: number;
}

export const SEGMENT_BYTES = 16 * 1024 * 1024;

/**
 * WebKit refuses Blobs (and Files) in IndexedDB in an ephemeral session (a private window, a
 * WebDriver session): the transaction aborts with `error` null. Segments then go in as
 * ArrayBuffers, which it keeps. Decided by the first refused write, per worker.
 */
let blobsRefused = false;

async function putSegment(key: string, blob: Blob, db: UseStore): Promise<void> {
  if (!blobsRefused) {
    try {
      await set(key, blob, db);
      return;
    } catch (err) {
      if (err !== null && err !== undefined) throw err;
      blobsRefused = true;
    }
  }
  await set(key, await blob.arrayBuffer(), db);
}

export class IdbBlobStore implements BlobStore {
  readonly #db: UseStore;
  readonly #segmentBytes: number;

  constructor(dbName = 'longshore', segmentBytes = SEGMENT_BYTES) {
    this.#db = createStore(dbName, 'blobs');
    this.#segmentBytes = segmentBytes;
  }

  #recordKey(key: string): string {
    return `blob:${key}`;
  }

  async #record(key: string): Promise<BlobRecord | undefined> {
    return get<BlobRecord>(this.#recordKey(key), this.#db);
  }

  async has(key: string): Promise<boolean> {
    return (await this.#record(key)) !== undefined;
  }

  async size(key: string): Promise<number | undefined> {
    return (await this.#record(key))?.size;
  }

  async put(key: string, stream: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<number> {
    const id = `${key}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const segments: string[] = [];
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    // One segment is written while the next one fills: reading never waits on IndexedDB unless
    // it gets a whole segment ahead (bounded memory: at most two segments held).
    let writing: Promise<void> = Promise.resolve();
    const flush = async () => {
      if (pendingBytes === 0) return;
      const segKey = `seg:${id}:${segments.length}`;
      segments.push(segKey);
      const blob = new Blob(pending as BlobPart[]);
      pending = [];
      pendingBytes = 0;
      await writing;
      writing = putSegment(segKey, blob, this.#db);
      writing.catch(() => undefined);
    };
    try {
      const total = await drain(stream, signal, async (chunk) => {
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= this.#segmentBytes) await flush();
      });
      await flush();
      await writing;
      signal?.throwIfAborted();
      await set(this.#recordKey(key), { size: total, segments, storedAt: Date.now() } satisfies BlobRecord, this.#db);
      return total;
    } catch (err) {
      await writing.catch(() => undefined);
      await delMany(segments, this.#db).catch(() => undefined);
      throw err;
    }
  }

  /** The stored bytes as one (disk-backed) Blob; undefined when absent. */
  async getBlob(key: string): Promise<Blob | undefined> {
    const record = await this.#record(key);
    if (!record) return undefined;
    const got = await getMany<Blob | ArrayBuffer | undefined>(record.segments, this.#db);
    const parts = got.flatMap((p) => (p instanceof Blob ? [p] : p instanceof ArrayBuffer ? [new Blob([p])] : []));
    if (parts.length !== got.length) {
      // A segment went missing (storage evicted?): forget the record rather than serve a hole.
      await this.delete(key);
      return undefined;
    }
    return parts.length === 1 ? parts[0]! : new Blob(parts);
  }

  async open(key: string): Promise<ReadableStream<Uint8Array> | undefined> {
    return (await this.getBlob(key))?.stream();
  }

  async delete(key: string): Promise<void> {
    const record = await this.#record(key);
    if (record) await delMany(record.segments, this.#db);
    await del(this.#recordKey(key), this.#db);
  }

  /** Every stored blob key and size (for the cache view and tests). */
  async list(): Promise<{ key: string; size: number }[]> {
    const all = (await keys(this.#db)).map(String).filter((k) => k.startsWith('blob:'));
    const records = await getMany<BlobRecord>(all, this.#db);
    return all.map((k, i) => ({ key: k.slice('blob:'.length), size: records[i]?.size ?? 0 }));
  }

  /** Remove segments no record points to (left by a tab closed mid-download). */
  async sweep(): Promise<number> {
    const all = (await keys(this.#db)).map(String);
    const records = await getMany<BlobRecord>(all.filter((k) => k.startsWith('blob:')), this.#db);
    const live = new Set(records.flatMap((r) => r?.segments ?? []));
    const orphans = all.filter((k) => k.startsWith('seg:') && !live.has(k));
    await delMany(orphans, this.#db);
    return orphans.length;
  }
}
