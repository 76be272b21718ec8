// Verified blobs in IndexedDB (via idb-keyval), keyed by digest, plus unfinished downloads kept
// for a later resume. Bytes arrive as a stream and are persisted in large Blob segments while they
// pass: a Blob built in JS sits in browser RAM until it is stored, so segments bound that, and
// nothing layer-sized is ever held in the JS heap.
//
// Keys: `blob:<key>` a verified blob's record (size, segments), written only after its stream
// ended cleanly; `part:<key>` an unfinished download (segments, bytes done, the SHA-256 state after
// them), never visible through has/size/open; `seg:<key>:<id>:<n>` the segments of either.
// A segment and the record that points at it are written in one transaction, so a partial's
// bytes, offset and hasher state always agree, whenever the page goes away.
//
// Where sync access handles work (a dedicated worker: the layer and pull workers), bytes go to
// files in the origin private file system instead (opfs-staging.ts): a partial is an OPFS file plus
// its `part:` record (bytes done, hasher state), and a verified blob's `blob:` record names that
// file (see commitStaged for why the bytes are not copied into IndexedDB). Elsewhere (a page,
// browsers or sessions refusing OPFS) the segments path above is used, and both kinds of records
// are read everywhere.
//
// Tabs and workers share the database: every writer of a key holds the Web Lock `<db>:<key>`
// exclusively while it writes (a download, a put, a delete), readers hold it shared, and sweep()
// only removes segments of keys whose lock is free, so one tab never deletes what another is
// still writing or has just committed.
import { createStore, del, get, getMany, keys, promisifyRequest, set, type UseStore } from 'idb-keyval';
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import { drain, type BlobStore, type PartialBlob, type PartialInfo, type Spill } from '../core/store/blob-store.ts';
import type { FollowablePartial } from './layer-tail.ts';
import {
  inflightDirectory,
  OPEN_PATIENCE_MS,
  openFresh,
  openSync,
  ownerOf,
  readBack,
  removeStaged,
  stagedFile,
  stagedName,
  stagedNames,
  stagingDirectory,
  writeAll,
  type StagedKind,
  type SyncHandle,
} from './opfs-staging.ts';

interface BlobRecord {
  size: number;
  segments: string[];
  storedAt: number;
  /** A staged blob: its bytes are this file of the staging directory, not segments. */
  file?: string;
}

interface PartialRecord {
  /** The blob's size from its descriptor. */
  total: number;
  /** Bytes in `segments`, all hashed into `state`. */
  done: number;
  state: Uint8Array | undefined;
  segments: string[];
  updatedAt: number;
  /** Its bytes are this file of the staging directory (its first `done` bytes count), not segments. */
  file?: string;
}

export const SEGMENT_BYTES = 16 * 1024 * 1024;
/** Segments of a spill (a range fetched ahead of the hash cursor): smaller, as several fill at once. */
export const SPILL_SEGMENT_BYTES = 4 * 1024 * 1024;
/** A partial download is made durable at least this often, so a reload on a slow link loses little. */
export const CHECKPOINT_MS = 1000;

export interface IdbBlobStoreOptions {
  segmentBytes?: number;
  checkpointMs?: number;
  /** Web Locks (default navigator.locks where it exists); null: no cross-tab coordination. */
  locks?: LockManager | null;
  /** false: never stage bytes in OPFS (IndexedDB segments only, as where OPFS is refused). */
  staging?: boolean;
  /** How long opening a new staged file may take before another is tried (opfs-staging.ts, openFresh). */
  openPatienceMs?: number;
  /**
   * delete() leaves a staged blob's file to the next sweep(): a File handed out by getBlob() may
   * still be read after its blob was deleted (a streamed download reads each blob when its turn
   * comes), and an OPFS File whose file is gone is unreadable. For the pull worker, which sweeps
   * after each pull.
   */
  lateRemoval?: boolean;
}

/** Turns an IndexedDB failure into a typed error: a full disk gets its own code and hint. */
export function storageError(err: unknown, what: string): LongshoreError {
  if (err instanceof LongshoreError) return err;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'QuotaExceededError') {
    return new LongshoreError(ErrorCode.QuotaExceeded, `The browser refused to store more (${what}): its storage quota is used up.`, {
      hint: "Free disk space, or clear longshore's cache (site data for this page), or turn off keeping a copy in this browser, then pull again.",
      cause: err,
    });
  }
  if (name === 'TimeoutError' && err instanceof DOMException) {
    return new LongshoreError(ErrorCode.Store, `${err.message} (${what})`, {
      hint: 'The browser’s storage stopped answering. Press Pull to try again (layers already stored are kept); if it happens again, restart the browser.',
      cause: err,
      retryable: true,
    });
  }
  if (name === 'AbortError' && err instanceof DOMException) {
    return new LongshoreError(ErrorCode.Store, `The browser aborted a storage write (${what}): ${err.message}`, {
      cause: err,
      retryable: true,
    });
  }
  return LongshoreError.from(err);
}

/**
 * WebKit refuses Blobs (and Files) in IndexedDB in an ephemeral session (a private window, a
 * WebDriver session): the transaction aborts with `error` null. Probed once per worker with a
 * one-byte Blob; where refused, segments go in as ArrayBuffers, which it keeps.
 */
let blobsAccepted: Promise<boolean> | undefined;

function acceptsBlobs(db: UseStore): Promise<boolean> {
  blobsAccepted ??= set(PROBE_KEY, new Blob([new Uint8Array(1)]), db).then(
    () => del(PROBE_KEY, db).then(() => true),
    (err: unknown) => {
      if (err !== null && err !== undefined) {
        blobsAccepted = undefined;
        throw err;
      }
      return false;
    },
  );
  return blobsAccepted;
}

const PROBE_KEY = 'probe:blob';

/** A stored segment as a Blob, whichever form it was kept in; undefined when missing. */
function segmentBlob(value: unknown): Blob | undefined {
  return value instanceof Blob ? value : value instanceof ArrayBuffer ? new Blob([value]) : undefined;
}

export class IdbBlobStore implements BlobStore {
  readonly #db: UseStore;
  readonly #name: string;
  readonly #segmentBytes: number;
  readonly #checkpointMs: number;
  readonly #locks: LockManager | undefined;
  readonly #staging: boolean;
  readonly #lateRemoval: boolean;
  readonly #openPatienceMs: number;

  constructor(dbName = 'longshore', options: IdbBlobStoreOptions | number = {}) {
    const o = typeof options === 'number' ? { segmentBytes: options } : options;
    this.#db = createStore(dbName, 'blobs');
    this.#name = dbName;
    this.#segmentBytes = o.segmentBytes ?? SEGMENT_BYTES;
    this.#checkpointMs = o.checkpointMs ?? CHECKPOINT_MS;
    const ambient = typeof navigator !== 'undefined' ? (navigator as { locks?: LockManager }).locks : undefined;
    this.#locks = o.locks === null ? undefined : (o.locks ?? ambient);
    this.#staging = o.staging ?? true;
    this.#lateRemoval = o.lateRemoval ?? false;
    this.#openPatienceMs = o.openPatienceMs ?? OPEN_PATIENCE_MS;
  }

  /** A new staged file for `key` (see openFresh: an open that does not answer is given up). */
  async openStaged(dir: FileSystemDirectoryHandle, key: string, kind: StagedKind): Promise<{ sync: SyncHandle; name: string }> {
    return openFresh(dir, () => stagedName(key, kind), this.#openPatienceMs);
  }

  /** Where in-flight bytes go here: the OPFS staging directory, or undefined for IndexedDB segments. */
  async stagingDirectory(): Promise<FileSystemDirectoryHandle | undefined> {
    return this.#staging ? stagingDirectory(this.#name) : undefined;
  }

  /** The staging directory with the async API only (to read or remove staged files from any context). */
  async #filesDir(): Promise<FileSystemDirectoryHandle | undefined> {
    return (await this.stagingDirectory()) ?? inflightDirectory(this.#name, false);
  }

  #recordKey(key: string): string {
    return `blob:${key}`;
  }

  #partKey(key: string): string {
    return `part:${key}`;
  }

  #segmentKey(key: string): string {
    return `seg:${key}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  }

  #lockName(key: string): string {
    return `longshore-store:${this.#name}:${key}`;
  }

  /** Runs `fn` holding `key`'s lock; with `ifAvailable`, `fn` gets false (and nothing waits) when it is taken. */
  async #withLock<T>(
    key: string,
    mode: LockMode,
    fn: (held: boolean) => Promise<T>,
    options: { ifAvailable?: boolean; signal?: AbortSignal } = {},
  ): Promise<T> {
    if (!this.#locks) return fn(true);
    const request: LockOptions = {
      mode,
      ...(options.ifAvailable ? { ifAvailable: true } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    return this.#locks.request(this.#lockName(key), request, (lock) => fn(lock !== null)) as Promise<T>;
  }

  /** Takes `key`'s exclusive lock and keeps it until the returned function is called. */
  async #hold(key: string, signal?: AbortSignal): Promise<() => void> {
    const locks = this.#locks;
    if (!locks) return () => undefined;
    return new Promise<() => void>((resolve, reject) => {
      locks
        .request(
          this.#lockName(key),
          { mode: 'exclusive', ...(signal ? { signal } : {}) },
          () => new Promise<void>((release) => resolve(release)),
        )
        .catch(reject);
    });
  }

  /** One read-write transaction over the object store (idb-keyval's store, raw). */
  /**
   * Gathers chunks into segments of `limit` bytes, written one at a time while the next fills:
   * reading never waits on IndexedDB unless it gets a whole segment ahead (at most two held).
   * `segments` lists the keys written or being written, in order.
   */
  #segmentWriter(what: string, keyFor: (n: number) => string, limit: number) {
    const segments: string[] = [];
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let writing: Promise<void> = Promise.resolve();
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const segKey = keyFor(segments.length);
      segments.push(segKey);
      const blob = new Blob(pending as BlobPart[]);
      pending = [];
      pendingBytes = 0;
      await writing;
      const value = await this.#segmentValue(blob);
      writing = this.#tx(what, (s) => s.put(value, segKey));
      writing.catch(() => undefined);
    };
    return {
      segments,
      flush,
      write: async (chunk: Uint8Array): Promise<void> => {
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= limit) await flush();
      },
      /** The outcome of the last segment write. */
      settled: (): Promise<void> => writing,
      /** Forget what has not been flushed. */
      drop: (): void => {
        pending = [];
        pendingBytes = 0;
      },
    };
  }

  /** What a segment is stored as: the Blob itself, or its bytes where this browser refuses Blobs. */
  async #segmentValue(blob: Blob): Promise<Blob | ArrayBuffer> {
    return (await acceptsBlobs(this.#db)) ? blob : blob.arrayBuffer();
  }

  async #tx(what: string, body: (store: IDBObjectStore) => void): Promise<void> {
    try {
      await this.#db('readwrite', (store) => {
        try {
          body(store);
        } catch (err) {
          // A request that throws (QuotaExceededError, DataCloneError) must not let the others commit.
          store.transaction.abort();
          throw err;
        }
        return promisifyRequest(store.transaction);
      });
    } catch (err) {
      throw storageError(err, what);
    }
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
    const dir = await this.stagingDirectory();
    if (dir) return this.#putStaged(dir, key, stream, signal);
    const release = await this.#hold(key, signal);
    const prefix = this.#segmentKey(key);
    const writer = this.#segmentWriter(`a segment of ${key}`, (n) => `${prefix}:${n}`, this.#segmentBytes);
    const { segments } = writer;
    try {
      const total = await drain(stream, signal, (chunk) => writer.write(chunk));
      await writer.flush();
      await writer.settled();
      signal?.throwIfAborted();
      const old = await this.#record(key);
      await this.#tx(`the record of ${key}`, (s) => {
        s.put({ size: total, segments, storedAt: Date.now() } satisfies BlobRecord, this.#recordKey(key));
        for (const seg of old?.segments ?? []) s.delete(seg);
      });
      return total;
    } catch (err) {
      await writer.settled().catch(() => undefined);
      await this.#tx('cleanup', (s) => segments.forEach((seg) => s.delete(seg))).catch(() => undefined);
      throw storageError(err, `blob ${key}`);
    } finally {
      release();
    }
  }

  /** put() through a staged file: the stream's bytes go to OPFS, then become the blob (see commitStaged). */
  async #putStaged(
    dir: FileSystemDirectoryHandle,
    key: string,
    stream: ReadableStream<Uint8Array>,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const release = await this.#hold(key, signal);
    let staged: { sync: SyncHandle; name: string } | undefined;
    let closed = false;
    let committed = false;
    try {
      staged = await this.openStaged(dir, key, 'put');
      const { sync, name } = staged;
      let at = 0;
      const total = await drain(stream, signal, (chunk) => {
        writeAll(sync, chunk, at);
        at += chunk.byteLength;
      });
      sync.close();
      closed = true;
      signal?.throwIfAborted();
      await this.commitStaged(key, name, total);
      committed = true;
      return total;
    } catch (err) {
      throw storageError(err, `blob ${key}`);
    } finally {
      if (staged && !closed) staged.sync.close();
      if (staged && !committed) await removeStaged(dir, staged.name);
      release();
    }
  }

  /**
   * The unfinished download of `key`, holding its lock until commit() or close(): a second pull of
   * the same blob (another tab, another layer worker) waits here, then finds it committed.
   */
  async openPartial(key: string, size: number, signal?: AbortSignal): Promise<PartialBlob> {
    const release = await this.#hold(key, signal);
    try {
      const dir = await this.stagingDirectory();
      let record = await get<PartialRecord>(this.#partKey(key), this.#db);
      // A partial kept in the other form than this context writes (segments here, a file where
      // OPFS is refused) is not continued: dropped, the blob starts again.
      const otherForm = record !== undefined && (dir ? record.done > 0 && !record.file : record.file !== undefined);
      if (record && (otherForm || record.total !== size || record.done > size || (record.done > 0 && !record.state))) {
        await this.dropPartial(key, record.segments, record.file);
        record = undefined;
      }
      if (dir) return await OpfsPartial.open(this, dir, key, size, record, release);
      return new IdbPartial(this, key, record ?? { total: size, done: 0, state: undefined, segments: [], updatedAt: Date.now() }, release);
    } catch (err) {
      release();
      throw storageError(err, `the partial of ${key}`);
    }
  }

  /**
   * A range of `key` fetched ahead of the hash cursor, in segments owned by `key` (so sweep()
   * leaves them alone while the download holds the key's lock, and removes them after a crash).
   */
  async createSpill(key: string): Promise<Spill> {
    const dir = await this.stagingDirectory();
    if (dir) return opfsSpill(dir, key, () => this.openStaged(dir, key, 'spill'));
    const limit = Math.min(this.#segmentBytes, SPILL_SEGMENT_BYTES);
    const writer = this.#segmentWriter(
      `a range of ${key}`,
      (n) => `seg:${key}:spill${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}:${n}`,
      limit,
    );
    const { segments } = writer;
    let size = 0;
    return {
      get size() {
        return size;
      },
      write: async (chunk) => {
        size += chunk.byteLength;
        await writer.write(chunk);
      },
      read: async () => {
        await writer.flush();
        await writer.settled();
        const parts = (await getMany<unknown>(segments, this.#db)).map(segmentBlob);
        if (parts.some((p) => !p)) throw new LongshoreError(ErrorCode.Store, `A stored range of ${key} went missing.`, { retryable: true });
        return new Blob(parts as Blob[]).stream();
      },
      discard: async () => {
        writer.drop();
        await writer.settled().catch(() => undefined);
        const drop = segments.splice(0);
        if (drop.length) await this.#tx('cleanup', (s) => drop.forEach((seg) => s.delete(seg)));
      },
    };
  }

  /** @internal for IdbPartial */
  get segmentBytes(): number {
    return this.#segmentBytes;
  }

  /** @internal for IdbPartial */
  get checkpointMs(): number {
    return this.#checkpointMs;
  }

  /** @internal for IdbPartial: a new segment and the partial's record pointing at it, in one transaction. */
  async checkpoint(key: string, record: PartialRecord, segment: Blob | undefined): Promise<void> {
    const segKey = segment ? `${this.#segmentKey(key)}:${record.segments.length}` : undefined;
    const next: PartialRecord = { ...record, segments: segKey ? [...record.segments, segKey] : record.segments };
    const value = segment && (await this.#segmentValue(segment));
    await this.#tx(`a segment of ${key}`, (s) => {
      if (segKey) s.put(value, segKey);
      s.put(next, this.#partKey(key));
    });
    record.segments = next.segments;
  }

  /** @internal for IdbPartial: the partial becomes the blob, in one transaction. */
  async promote(key: string, record: PartialRecord, last: Blob | undefined, size: number): Promise<void> {
    const segKey = last ? `${this.#segmentKey(key)}:${record.segments.length}` : undefined;
    const segments = segKey ? [...record.segments, segKey] : record.segments;
    const old = await this.#record(key);
    const value = last && (await this.#segmentValue(last));
    await this.#tx(`the record of ${key}`, (s) => {
      if (segKey) s.put(value, segKey);
      s.put({ size, segments, storedAt: Date.now() } satisfies BlobRecord, this.#recordKey(key));
      s.delete(this.#partKey(key));
      for (const seg of old?.segments ?? []) if (!segments.includes(seg)) s.delete(seg);
    });
  }

  /** @internal for the partials: forget the partial, its segments and its staged file. */
  async dropPartial(key: string, segments: readonly string[], file?: string): Promise<void> {
    await this.#tx(`the partial of ${key}`, (s) => {
      s.delete(this.#partKey(key));
      segments.forEach((seg) => s.delete(seg));
    });
    if (file) await removeStaged(await this.#filesDir(), file);
  }

  /** @internal for OpfsPartial: the partial's record (bytes done, hasher state after them, its file). */
  async saveStagedPartial(key: string, record: PartialRecord): Promise<void> {
    await this.#tx(`the partial of ${key}`, (s) => s.put(record, this.#partKey(key)));
  }

  /**
   * @internal The verified staged file `name` becomes the blob `key`, in one transaction with the
   * end of its partial: the record names the file, which is the blob's bytes from then on.
   *
   * Not copied into IndexedDB segments: Chromium keeps a Blob sliced from an OPFS File in
   * IndexedDB as a reference to that file (removing the file makes the stored Blob unreadable:
   * NotFoundError), and any real copy takes the bytes back through JS or Blob memory, which is
   * what staging removes. IndexedDB holds the records (the cache's index), OPFS the bytes.
   */
  async commitStaged(key: string, name: string, size: number): Promise<void> {
    const old = await this.#record(key);
    // Keys are content digests: a blob stored already holds these very bytes. Its file stays (an
    // archive being written may be reading it: a Blob of an OPFS file breaks once the file is
    // removed) and this copy goes. Two layers of one pull with the same diff_id did this.
    const dir = old?.file && old.file !== name && old.size === size ? await this.#filesDir() : undefined;
    if (dir && old?.file && (await stagedFile(dir, old.file))?.size === size) {
      await this.#tx(`the record of ${key}`, (s) => s.delete(this.#partKey(key)));
      await removeStaged(dir, name);
      return;
    }
    await this.#tx(`the record of ${key}`, (s) => {
      s.put({ size, segments: [], storedAt: Date.now(), file: name } satisfies BlobRecord, this.#recordKey(key));
      s.delete(this.#partKey(key));
      for (const seg of old?.segments ?? []) s.delete(seg);
    });
    if (old?.file && old.file !== name) await removeStaged(await this.#filesDir(), old.file);
  }

  /** The stored bytes as one (disk-backed) Blob; undefined when absent. */
  async getBlob(key: string): Promise<Blob | undefined> {
    const read = async (): Promise<{ record?: BlobRecord; parts?: Blob[] }> => {
      const record = await this.#record(key);
      if (!record) return {};
      if (record.file) {
        const dir = await this.#filesDir();
        const file = dir && (await stagedFile(dir, record.file));
        return file && file.size === record.size ? { record, parts: [file] } : { record };
      }
      const got = (await getMany<unknown>(record.segments, this.#db)).map(segmentBlob);
      const parts = got.filter((p): p is Blob => p !== undefined);
      return parts.length === got.length ? { record, parts } : { record };
    };
    // Shared: a writer of this key (exclusive) cannot swap the record under the read.
    const first = await this.#withLock(key, 'shared', read);
    if (first.parts) return first.parts.length === 1 ? first.parts[0]! : new Blob(first.parts);
    if (!first.record) return undefined;
    // A segment went missing (storage evicted?): forget the record rather than serve a hole, but
    // only if it is still the same broken record once nobody else writes this key.
    await this.#withLock(key, 'exclusive', async () => {
      const again = await read();
      if (!again.record || again.parts || again.record.storedAt !== first.record!.storedAt) return;
      await this.#deleteUnlocked(key, again.record);
    });
    return undefined;
  }

  async open(key: string): Promise<ReadableStream<Uint8Array> | undefined> {
    return (await this.getBlob(key))?.stream();
  }

  async #deleteUnlocked(key: string, record: BlobRecord | undefined, fileAfter?: Promise<unknown>): Promise<void> {
    await this.#tx(`the record of ${key}`, (s) => {
      for (const seg of record?.segments ?? []) s.delete(seg);
      s.delete(this.#recordKey(key));
    });
    if (!record?.file) return;
    if (!this.#lateRemoval) await removeStaged(await this.#filesDir(), record.file);
    else if (fileAfter) {
      // Its reader said when it is done: the file goes then, not at the next sweep. Its name is
      // this blob's own (a later put of the key writes a new file), so nothing else can be hit.
      const file = record.file;
      void fileAfter.then(async () => removeStaged(await this.#filesDir(), file)).catch(() => undefined);
    }
  }

  /**
   * Forget `key`. A staged blob's file goes with it, except in a store with late removal (the pull
   * worker), where it goes at the next sweep(), or once `fileAfter` resolves: the caller knows
   * when whoever reads it (a destination) is done.
   */
  async delete(key: string, options: { fileAfter?: Promise<unknown> } = {}): Promise<void> {
    await this.#withLock(key, 'exclusive', async () => this.#deleteUnlocked(key, await this.#record(key), options.fileAfter));
  }

  /** Every stored blob key and size (for the cache view and tests). */
  async list(): Promise<{ key: string; size: number }[]> {
    const all = (await keys(this.#db)).map(String).filter((k) => k.startsWith('blob:'));
    const records = await getMany<BlobRecord>(all, this.#db);
    return all.map((k, i) => ({ key: k.slice('blob:'.length), size: records[i]?.size ?? 0 }));
  }

  /** Unfinished downloads with bytes kept: what a later pull of the same blob continues from. */
  async listPartials(): Promise<PartialInfo[]> {
    const all = (await keys(this.#db)).map(String).filter((k) => k.startsWith('part:'));
    const records = await getMany<PartialRecord>(all, this.#db);
    return all
      .map((k, i) => ({ key: k.slice('part:'.length), record: records[i] }))
      .filter((p): p is { key: string; record: PartialRecord } => p.record !== undefined && p.record.done > 0)
      .map(({ key, record }) => ({ key, done: record.done, total: record.total, updatedAt: record.updatedAt }));
  }

  /** Drop one unfinished download; false when a pull is writing it right now (nothing dropped). */
  async discardPartial(key: string): Promise<boolean> {
    return this.#withLock(
      key,
      'exclusive',
      async (held) => {
        if (!held) return false;
        const record = await get<PartialRecord>(this.#partKey(key), this.#db);
        if (record) await this.dropPartial(key, record.segments, record.file);
        return true;
      },
      { ifAvailable: true },
    );
  }

  /** Drop every unfinished download not being written; returns how many were dropped. */
  async discardPartials(): Promise<number> {
    let n = 0;
    for (const p of await this.listPartials()) if (await this.discardPartial(p.key)) n++;
    return n;
  }

  /**
   * Remove segments no record points to (left by a tab closed mid-put, or a write that failed
   * half-way). A key whose lock is held is skipped: its writer's segments are not orphans yet.
   */
  async sweep(): Promise<number> {
    const dir = await inflightDirectory(this.#name, false);
    /** Orphaned segments and staged files (`file:<name>`), by owner key. */
    const orphansOf = async (): Promise<Map<string, string[]>> => {
      const all = (await keys(this.#db)).map(String);
      const recordKeys = all.filter((k) => k.startsWith('blob:') || k.startsWith('part:'));
      const records = await getMany<{ segments?: string[]; file?: string }>(recordKeys, this.#db);
      const live = new Set(records.flatMap((r) => [...(r?.segments ?? []), ...(r?.file ? [`file:${r.file}`] : [])]));
      const byKey = new Map<string, string[]>();
      const add = (key: string, item: string) => byKey.set(key, [...(byKey.get(key) ?? []), item]);
      for (const seg of all) if (seg.startsWith('seg:') && !live.has(seg)) add(segmentOwner(seg), seg);
      for (const name of dir ? await stagedNames(dir).catch(() => []) : []) {
        const key = ownerOf(name);
        if (key !== undefined && !live.has(`file:${name}`)) add(key, `file:${name}`);
      }
      return byKey;
    };
    let removed = 0;
    for (const key of (await orphansOf()).keys()) {
      removed += await this.#withLock(
        key,
        'exclusive',
        async (held) => {
          if (!held) return 0;
          // Read again under the lock: a writer may have committed between the scan and now.
          const orphans = (await orphansOf()).get(key) ?? [];
          const segments = orphans.filter((o) => o.startsWith('seg:'));
          if (segments.length) await this.#tx('sweep', (s) => segments.forEach((seg) => s.delete(seg)));
          for (const o of orphans) if (o.startsWith('file:')) await removeStaged(dir, o.slice('file:'.length));
          return orphans.length;
        },
        { ifAvailable: true },
      );
    }
    return removed;
  }
}

/** `seg:<key>:<id>:<n>` → `<key>` (keys contain ':' themselves: "sha256:…"). */
function segmentOwner(segment: string): string {
  const parts = segment.slice('seg:'.length).split(':');
  return parts.slice(0, -2).join(':');
}

/** An unfinished download in IndexedDB: segments + bytes done + hasher state, checkpointed together. */
class IdbPartial implements PartialBlob {
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #lastState: (() => Uint8Array) | undefined;
  #writing: Promise<void> = Promise.resolve();
  #failed: unknown;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #open = true;

  constructor(
    readonly store: IdbBlobStore,
    readonly key: string,
    readonly record: PartialRecord,
    readonly release: () => void,
  ) {}

  get offset(): number {
    return this.record.done + this.#pendingBytes;
  }

  get state(): Uint8Array | undefined {
    return this.#pendingBytes ? this.#lastState?.() : this.record.state;
  }

  async write(chunk: Uint8Array, state: () => Uint8Array): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.byteLength;
    this.#lastState = state;
    if (this.#pendingBytes >= this.store.segmentBytes) await this.#checkpoint();
    else this.#timer ??= setTimeout(() => void this.#checkpoint().catch(() => undefined), this.store.checkpointMs);
  }

  /** Persist the pending bytes with the hasher state after them; at most one write in flight. */
  async #checkpoint(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#pendingBytes || !this.#lastState || !this.#open) return;
    // Taken together, synchronously: the state is the hasher's after exactly these bytes.
    const segment = new Blob(this.#pending as BlobPart[]);
    const done = this.record.done + this.#pendingBytes;
    const state = this.#lastState();
    this.#pending = [];
    this.#pendingBytes = 0;
    const previous = this.#writing;
    this.#writing = (async () => {
      await previous;
      await this.store.checkpoint(this.key, Object.assign(this.record, { done, state, updatedAt: Date.now() }), segment);
    })();
    this.#writing.catch((err: unknown) => {
      this.#failed ??= err;
    });
    await previous;
    if (this.#failed !== undefined) throw this.#failed;
  }

  async reset(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#writing.catch(() => undefined);
    this.#failed = undefined;
    this.#pending = [];
    this.#pendingBytes = 0;
    const segments = this.record.segments;
    Object.assign(this.record, { done: 0, state: undefined, segments: [], updatedAt: Date.now() });
    await this.store.dropPartial(this.key, segments);
  }

  async commit(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      await this.#writing;
      const last = this.#pendingBytes ? new Blob(this.#pending as BlobPart[]) : undefined;
      const size = this.record.done + this.#pendingBytes;
      await this.store.promote(this.key, this.record, last, size);
      this.#pending = [];
      this.#pendingBytes = 0;
    } finally {
      this.#finish();
    }
  }

  async close(keep: boolean): Promise<void> {
    try {
      if (keep && this.#failed === undefined) {
        await this.#checkpoint().catch(() => undefined);
        await this.#writing.catch(() => undefined);
      }
      if (!keep || this.#failed !== undefined) {
        if (this.#timer !== undefined) clearTimeout(this.#timer);
        await this.#writing.catch(() => undefined);
        // Whatever was written, including a segment a failed checkpoint may have left behind.
        await this.store.dropPartial(this.key, this.record.segments);
      }
    } finally {
      this.#finish();
    }
  }

  #finish(): void {
    if (!this.#open) return;
    this.#open = false;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.release();
  }
}

/**
 * An unfinished download in a staged file: bytes written through a sync access handle at the
 * running offset, and a record (bytes done, hasher state) saved at least every checkpointMs, so a
 * resume knows how far the file is good. Reopened, the file is cut back to the record's `done`:
 * what came after the last checkpoint is fetched again.
 */
class OpfsPartial implements PartialBlob, FollowablePartial {
  /** write() copies each chunk before it returns: the fetcher may reuse the chunk's memory. */
  readonly transient = true;
  #offset: number;
  #phase: FollowablePartial['phase'] = 'open';
  readonly #watchers = new Set<() => void>();
  #lastState: (() => Uint8Array) | undefined;
  #saved: Promise<void> = Promise.resolve();
  #failed: unknown;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #open = true;

  private constructor(
    readonly store: IdbBlobStore,
    readonly dir: FileSystemDirectoryHandle,
    readonly key: string,
    readonly record: PartialRecord & { file: string },
    readonly sync: SyncHandle,
    readonly release: () => void,
  ) {
    this.#offset = record.done;
  }

  static async open(
    store: IdbBlobStore,
    dir: FileSystemDirectoryHandle,
    key: string,
    size: number,
    found: PartialRecord | undefined,
    release: () => void,
  ): Promise<OpfsPartial> {
    let record: PartialRecord & { file: string };
    let sync: SyncHandle;
    if (found?.file !== undefined) {
      record = { ...found, file: found.file };
      sync = await openSync(dir, record.file);
    } else {
      const opened = await store.openStaged(dir, key, 'part');
      sync = opened.sync;
      record = { total: size, done: 0, state: undefined, segments: [], updatedAt: Date.now(), file: opened.name };
    }
    try {
      if (sync.getSize() < record.done) {
        // The file lost bytes the record counts (cleared site data?): start again.
        Object.assign(record, { done: 0, state: undefined });
      }
      sync.truncate(record.done);
      if (!found?.file) await store.saveStagedPartial(key, { ...record });
    } catch (err) {
      sync.close();
      throw err;
    }
    return new OpfsPartial(store, dir, key, record, sync, release);
  }

  get offset(): number {
    return this.#offset;
  }

  get size(): number {
    return this.record.total;
  }

  get state(): Uint8Array | undefined {
    return this.#offset > this.record.done ? this.#lastState?.() : this.record.state;
  }

  get phase(): FollowablePartial['phase'] {
    return this.#phase;
  }

  watch(listener: () => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }

  #changed(): void {
    // Called per chunk written: no copy of the set (a watcher that leaves while it runs is not
    // visited again, as Set iteration allows).
    for (const w of this.#watchers) w();
  }

  readAt(into: Uint8Array, at: number): number {
    if (this.#phase !== 'open') throw new Error('The partial is closed.');
    const n = Math.min(into.byteLength, this.#offset - at);
    if (n <= 0) return 0;
    return this.sync.read(into.subarray(0, n), { at });
  }

  async write(chunk: Uint8Array, state: () => Uint8Array): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      writeAll(this.sync, chunk, this.#offset);
    } catch (err) {
      throw storageError(err, `a part of ${this.key}`);
    }
    this.#offset += chunk.byteLength;
    this.#lastState = state;
    this.#timer ??= setTimeout(() => void this.#checkpoint().catch(() => undefined), this.store.checkpointMs);
    this.#changed();
  }

  /**
   * Record how far the file is good, with the hasher state after exactly those bytes. No flush():
   * on Linux it is an fsync, which behind another process's heavy writes can block this worker
   * for seconds, and it buys nothing here: a crashed tab or browser loses no written byte (they
   * are in the kernel), IndexedDB itself commits with relaxed durability, and bytes lost to a
   * power cut fail the blob's digest, which restarts it.
   */
  async #checkpoint(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#open || this.#offset === this.record.done || !this.#lastState) return;
    const done = this.#offset;
    const state = this.#lastState();
    const previous = this.#saved;
    this.#saved = (async () => {
      await previous;
      Object.assign(this.record, { done, state, updatedAt: Date.now() });
      await this.store.saveStagedPartial(this.key, { ...this.record });
    })();
    this.#saved.catch((err: unknown) => {
      this.#failed ??= err;
    });
    await this.#saved;
  }

  async reset(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#saved.catch(() => undefined);
    this.#failed = undefined;
    this.sync.truncate(0);
    this.#offset = 0;
    this.#changed();
    Object.assign(this.record, { done: 0, state: undefined, updatedAt: Date.now() });
    await this.store.saveStagedPartial(this.key, { ...this.record });
  }

  async commit(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      await this.#saved;
      this.#phase = 'committing';
      this.sync.close();
      await this.store.commitStaged(this.key, this.record.file, this.#offset);
      this.#phase = 'committed';
    } catch (err) {
      throw storageError(err, `blob ${this.key}`);
    } finally {
      this.#finish();
    }
  }

  async close(keep: boolean): Promise<void> {
    this.#phase = 'closed';
    try {
      if (keep && this.#failed === undefined) await this.#checkpoint().catch(() => undefined);
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      await this.#saved.catch(() => undefined);
      this.#closeSync();
      // Nothing worth a resume (or bytes known bad): no record, no file.
      if (!keep || this.#failed !== undefined || this.record.done === 0) await this.store.dropPartial(this.key, [], this.record.file);
    } finally {
      this.#finish();
    }
  }

  #closeSync(): void {
    try {
      this.sync.close();
    } catch {
      // Closed already (commit closes it before promoting).
    }
  }

  #finish(): void {
    if (!this.#open) return;
    this.#open = false;
    if (this.#phase !== 'committed') this.#phase = 'closed';
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#closeSync();
    this.release();
    this.#changed();
  }
}

/** The buffer a spill is read back through while its range arrives. */
const READ_FROM_BYTES = 1024 * 1024;

/**
 * A range fetched ahead of the hash cursor, in a staged file owned by `key` (swept after a crash,
 * left alone while the download holds the key's lock), read back through one reused buffer.
 */
async function opfsSpill(
  dir: FileSystemDirectoryHandle,
  key: string,
  open: () => Promise<{ sync: SyncHandle; name: string }>,
): Promise<Spill & { transient: true; snapshot(): Promise<Blob> }> {
  let sync: SyncHandle;
  let name: string;
  try {
    ({ sync, name } = await open());
  } catch (err) {
    throw storageError(err, `a range of ${key}`);
  }
  let size = 0;
  let gone = false;
  let readBuffer: Uint8Array | undefined;
  return {
    transient: true,
    get size() {
      return size;
    },
    write: async (chunk) => {
      try {
        writeAll(sync, chunk, size);
      } catch (err) {
        throw storageError(err, `a range of ${key}`);
      }
      size += chunk.byteLength;
    },
    read: async () => readBack(sync, size),
    // The bytes as a disk-backed Blob, for a destination to copy without JS: valid while the file
    // is not written again (Chromium refuses to read a snapshot of a file modified since).
    snapshot: async () => (await (await dir.getFileHandle(name)).getFile()).slice(0, size),
    // The hash cursor reads what arrived since it last looked, many times per piece, each range to
    // its end before the next: one buffer for all of them, not a new one per range left to the
    // collector (the layer workers held 133–142 MB of such buffers in a 1.5 GB pull).
    readFrom: (from, to) => readBack(sync, to, undefined, from, (readBuffer ??= new Uint8Array(READ_FROM_BYTES))),
    // The file keeps its length (and the space the browser granted it): the next range overwrites
    // it from byte 0 and only `size` bytes are ever read back.
    reset: async () => {
      size = 0;
    },
    discard: async () => {
      if (gone) return;
      gone = true;
      try {
        sync.close();
      } catch {
        // Closed already.
      }
      await removeStaged(dir, name);
    },
  };
}
