// What tests/e2e/opfs-store.test.ts runs inside a dedicated worker of the app's origin (where sync
// access handles exist): the real IndexedDB store staging bytes in OPFS, driven by messages
// `{ id, op, args }`, answered `{ id, ok, value | error }`.
/// <reference lib="webworker" />
import { IdbBlobStore } from '../../../src/browser/idb-store.ts';
import { INFLIGHT_DIR, openSync, stagedName, stagedNames } from '../../../src/browser/opfs-staging.ts';
import { createHasher, sha256 } from '../../../src/core/digest.ts';

declare const self: DedicatedWorkerGlobalScope;

/** Deterministic bytes (xorshift), so two workers agree on a blob without sending it. */
function bytesOf(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function files(db: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const root = await navigator.storage.getDirectory();
    const dir = await (await root.getDirectoryHandle(INFLIGHT_DIR)).getDirectoryHandle(encodeURIComponent(db));
    for (const name of await stagedNames(dir)) out[name] = (await (await dir.getFileHandle(name)).getFile()).size;
  } catch {
    // No staging directory.
  }
  return out;
}

function records(db: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(db);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      if (!open.result.objectStoreNames.contains('blobs')) return resolve({});
      const store = open.result.transaction('blobs', 'readonly').objectStore('blobs');
      const keys = store.getAllKeys();
      const values = store.getAll();
      values.onsuccess = () => {
        open.result.close();
        resolve(Object.fromEntries(keys.result.map((k, i) => [String(k), values.result[i] instanceof Blob ? 'Blob' : values.result[i]])));
      };
      values.onerror = () => reject(values.error);
    };
  });
}

async function readAll(store: IdbBlobStore, key: string): Promise<string | undefined> {
  const blob = await store.getBlob(key);
  return blob ? await sha256(new Uint8Array(await blob.arrayBuffer())) : undefined;
}

/** Writes `bytes[from, to)` into the partial in 64 KiB chunks, hashing as the fetch engine does. */
async function feed(
  partial: Awaited<ReturnType<IdbBlobStore['openPartial']>>,
  hasher: Awaited<ReturnType<typeof createHasher>>,
  bytes: Uint8Array,
  from: number,
  to: number,
) {
  for (let at = from; at < to; at += 64 * 1024) {
    const chunk = bytes.slice(at, Math.min(to, at + 64 * 1024));
    hasher.update(chunk);
    await partial.write(chunk, () => hasher.save());
  }
}

const ops = {
  /** A blob written through a partial and committed: where it lives, and its bytes read back. */
  async commit(db: string, size: number) {
    const bytes = bytesOf(size, 7);
    const key = await sha256(bytes);
    const store = new IdbBlobStore(db, { checkpointMs: 50 });
    const staged = (await store.stagingDirectory()) !== undefined;
    const partial = await store.openPartial(key, size);
    const hasher = await createHasher();
    await feed(partial, hasher, bytes, 0, size);
    const during = await files(db);
    await partial.commit();
    const after = {
      records: await records(db),
      files: await files(db),
      has: await store.has(key),
      size: await store.size(key),
      read: await readAll(store, key),
    };
    await store.delete(key);
    return { key, staged, during, after, deleted: { records: await records(db), files: await files(db) } };
  },
  /**
   * The same blob put twice (two layers of one pull with the same diff_id): a Blob read from the
   * first copy before the second was committed must stay readable, and one file is left.
   */
  async twice(db: string, size: number) {
    const bytes = bytesOf(size, 5);
    const key = await sha256(bytes);
    const store = new IdbBlobStore(db);
    const stream = () => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(bytes.slice()), c.close()) });
    await store.put(key, stream());
    const first = await store.getBlob(key);
    await store.put(key, stream());
    let read: string;
    try {
      read = await sha256(new Uint8Array(await first!.arrayBuffer()));
    } catch (err) {
      read = `${(err as Error).name}`;
    }
    return { key, read, again: await readAll(store, key), files: await files(db) };
  },
  /** Writes `upto` bytes, waits for their checkpoint, writes `extra` more and stays open (the test then terminates this worker). */
  async stall(db: string, size: number, upto: number, extra: number) {
    const bytes = bytesOf(size, 11);
    const key = await sha256(bytes);
    const store = new IdbBlobStore(db, { checkpointMs: 100 });
    const partial = await store.openPartial(key, size);
    const hasher = await createHasher();
    await feed(partial, hasher, bytes, 0, upto);
    for (;;) {
      const part = (await records(db))[`part:${key}`] as { done?: number } | undefined;
      if (part?.done === upto) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await feed(partial, hasher, bytes, upto, upto + extra);
    return { key, records: await records(db), files: await files(db) };
  },
  /** In a new worker: the partial left by `stall` continues from its checkpoint and verifies. */
  async resume(db: string, size: number) {
    const bytes = bytesOf(size, 11);
    const key = await sha256(bytes);
    const store = new IdbBlobStore(db, { checkpointMs: 100 });
    const listed = await store.listPartials();
    const partial = await store.openPartial(key, size);
    const offset = partial.offset;
    const fileSize = Object.values(await files(db))[0];
    const hasher = await createHasher(partial.state);
    await feed(partial, hasher, bytes, offset, size);
    const digest = hasher.digest();
    await partial.commit();
    return { key, listed, offset, fileSize, digest, read: await readAll(store, key), records: await records(db) };
  },
  /** Staged files no record points to: one of a free key, one of a key whose lock another holder keeps. */
  async sweep(db: string) {
    const store = new IdbBlobStore(db);
    const dir = await store.stagingDirectory();
    if (!dir) throw new Error('no staging directory');
    const free = 'sha256:' + 'a'.repeat(64);
    const busy = 'sha256:' + 'b'.repeat(64);
    for (const key of [free, busy]) {
      const sync = await openSync(dir, stagedName(key, 'part'));
      sync.write(new Uint8Array(1000), { at: 0 });
      sync.close();
    }
    const before = await files(db);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    void navigator.locks.request(`longshore-store:${db}:${busy}`, () => {
      locked();
      return held;
    });
    await isLocked;
    const removed = await store.sweep();
    const whileHeld = await files(db);
    release();
    const removedAfter = await store.sweep();
    return { before, removed, whileHeld, removedAfter, after: await files(db), free, busy };
  },
  /**
   * The browser does not answer the first `hang` opens of a new `.put` file (seen in Chromium 156
   * under load: createSyncAccessHandle never settled): put() gives each up after `patienceMs` and
   * opens another file. The opens answer late once put() is done: their handles must be closed and
   * their files removed.
   */
  async hungOpen(db: string, size: number, hang: number, patienceMs: number) {
    type Opener = { createSyncAccessHandle: (this: FileSystemFileHandle) => Promise<{ close(): void }> };
    const proto = FileSystemFileHandle.prototype as unknown as Opener;
    const real = proto.createSyncAccessHandle;
    const held: (() => void)[] = [];
    const tried: string[] = [];
    proto.createSyncAccessHandle = function (this: FileSystemFileHandle) {
      if (!this.name.endsWith('.put')) return real.call(this);
      tried.push(this.name);
      if (tried.length > hang) return real.call(this);
      return new Promise((resolve, reject) => held.push(() => real.call(this).then(resolve, reject)));
    };
    const bytes = bytesOf(size, 3);
    const key = await sha256(bytes);
    const store = new IdbBlobStore(db, { openPatienceMs: patienceMs });
    let outcome: string;
    try {
      await store.put(key, new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(bytes.slice()), c.close()) }));
      outcome = 'stored';
    } catch (err) {
      outcome = `${(err as { code?: string }).code}: ${(err as Error).message}`;
    }
    const before = await files(db);
    held.forEach((answer) => answer());
    // The late answers close their handles and remove their files; wait for that (bounded by the test's timeout).
    let after = await files(db);
    const abandoned = tried.slice(0, hang);
    while (Object.keys(after).some((n) => abandoned.includes(n))) {
      await new Promise((r) => setTimeout(r, 20));
      after = await files(db);
    }
    proto.createSyncAccessHandle = real;
    return { key, outcome, tried, before, after, read: await readAll(store, key) };
  },
  /**
   * A spill read while it is written, as the hash cursor does: ranges one after another, each read
   * to its end. Their bytes must be exact, and they must come through one buffer (a new one per
   * range was garbage: 133–142 MB of it in a 1.5 GB pull's layer workers).
   */
  async spillReads(db: string, size: number, ranges: number) {
    const bytes = bytesOf(size, 13);
    const store = new IdbBlobStore(db);
    const spill = await store.createSpill(await sha256(bytes));
    const step = Math.ceil(size / ranges);
    const buffers = new Set<ArrayBufferLike>();
    const read = new Uint8Array(size);
    for (let at = 0; at < size; at += step) {
      const end = Math.min(size, at + step);
      await spill.write(bytes.slice(at, end));
      const reader = spill.readFrom!(at, end).getReader();
      let pos = at;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffers.add(value.buffer);
        read.set(value, pos);
        pos += value.byteLength;
      }
    }
    await spill.discard();
    return { exact: (await sha256(read)) === (await sha256(bytes)), buffers: buffers.size };
  },
  /** OPFS refused (getDirectory throws, as in WebKit's ephemeral sessions): the segments path. */
  async refused(db: string, size: number) {
    const proto = StorageManager.prototype as unknown as { getDirectory: () => Promise<never> };
    proto.getDirectory = () => Promise.reject(new DOMException('The request is not allowed.', 'SecurityError'));
    const result = await ops.commit(db, size);
    return result;
  },
};

export type StagingOps = typeof ops;

self.onmessage = async (e: MessageEvent<{ id: number; op: keyof typeof ops; args: unknown[] }>) => {
  const { id, op, args } = e.data;
  try {
    const value = await (ops[op] as (...a: unknown[]) => Promise<unknown>)(...args);
    self.postMessage({ id, ok: true, value });
  } catch (err) {
    self.postMessage({ id, ok: false, error: `${(err as Error)?.name}: ${(err as Error)?.message}` });
  }
};
self.postMessage({ ready: true });
