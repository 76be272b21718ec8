// Bytes in flight in the origin private file system (OPFS): a blob being fetched, a range fetched
// ahead of the hash cursor, a blob being written by put(), each in its own file written through a
// sync access handle (File System spec, "FileSystemSyncAccessHandle"), which only dedicated
// workers have. Unlike a Blob built in JS, nothing of it is held by the browser process nor waits
// for the worker's garbage collector: the bytes go from one reused buffer straight to disk.
//
// A verified blob keeps its file (see IdbBlobStore.commitStaged). Files live in
// `longshore-inflight/<db>/` and are named `<key, URI-encoded>~<id>.<kind>`, so a sweep knows
// whose they are (and leaves them alone while that key's Web Lock is held).

export const INFLIGHT_DIR = 'longshore-inflight';

export type StagedKind = 'part' | 'spill' | 'put';

/** A file's name for `key`: unique, and telling its owner back (see ownerOf). */
export function stagedName(key: string, kind: StagedKind): string {
  return `${encodeURIComponent(key)}~${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.${kind}`;
}

/** The key a staged file belongs to, undefined for a name that is not one of ours. */
export function ownerOf(name: string): string | undefined {
  const cut = name.lastIndexOf('~');
  if (cut <= 0) return undefined;
  try {
    return decodeURIComponent(name.slice(0, cut));
  } catch {
    return undefined;
  }
}

type StorageWithDirectory = StorageManager & { getDirectory?: () => Promise<FileSystemDirectoryHandle> };

/** The staging directory for database `db` with the async API (any context), undefined where OPFS is refused. */
export async function inflightDirectory(db: string, create = true): Promise<FileSystemDirectoryHandle | undefined> {
  try {
    const storage = (globalThis.navigator as { storage?: StorageWithDirectory } | undefined)?.storage;
    if (!storage?.getDirectory) return undefined;
    const root = await storage.getDirectory();
    const top = await root.getDirectoryHandle(INFLIGHT_DIR, { create });
    return await top.getDirectoryHandle(encodeURIComponent(db), { create });
  } catch {
    return undefined;
  }
}

/** The subset of FileSystemSyncAccessHandle used here (lib.dom lacks it in some TS versions). */
export interface SyncHandle {
  read(buffer: ArrayBufferView, options?: { at?: number }): number;
  write(buffer: ArrayBufferView, options?: { at?: number }): number;
  truncate(size: number): void;
  getSize(): number;
  close(): void;
}

type WithSyncHandle = FileSystemFileHandle & { createSyncAccessHandle?: () => Promise<SyncHandle> };

const probed = new Map<string, Promise<FileSystemDirectoryHandle | undefined>>();

/**
 * The staging directory where sync access handles work here (a dedicated worker of a browser that
 * grants OPFS), probed once per database and context by opening one; undefined elsewhere (a page,
 * WebKit's ephemeral WebDriver session, Firefox's private windows), and the store keeps its
 * IndexedDB segments path.
 */
export function stagingDirectory(db: string): Promise<FileSystemDirectoryHandle | undefined> {
  let found = probed.get(db);
  if (!found) {
    found = (async () => {
      const proto = (globalThis as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle?.prototype;
      if (!proto || !('createSyncAccessHandle' in proto)) return undefined;
      const dir = await inflightDirectory(db);
      if (!dir) return undefined;
      try {
        const name = `probe~${Math.random().toString(36).slice(2)}.probe`;
        const handle = (await dir.getFileHandle(name, { create: true })) as WithSyncHandle;
        const sync = await handle.createSyncAccessHandle!();
        sync.close();
        await dir.removeEntry(name);
        return dir;
      } catch {
        return undefined;
      }
    })();
    probed.set(db, found);
  }
  return found;
}

/** Opens `name` in `dir` (created if missing) for synchronous reads and writes. */
export async function openSync(dir: FileSystemDirectoryHandle, name: string): Promise<SyncHandle> {
  const handle = (await dir.getFileHandle(name, { create: true })) as WithSyncHandle;
  return handle.createSyncAccessHandle!();
}

/**
 * How long opening a new staged file may take before that attempt is given up. Chromium 156 on a
 * loaded 2-core machine took up to 2 s (createSyncAccessHandle, 10 pulls of 1.5 GB); in about one
 * pull in three of the same bench, one open never answered at all and the layer stalled behind it.
 */
export const OPEN_PATIENCE_MS = 10_000;
/** Attempts before opening a new staged file fails (each with its own name). */
export const OPEN_ATTEMPTS = 3;

/**
 * Opens a new staged file, named by `name()` afresh for each attempt. An attempt that has not
 * answered within `patienceMs` is left behind and the next one tries another file: it cannot
 * contend for the abandoned file's lock. If the abandoned one answers later, its handle is closed
 * and its file removed, so nothing is left open or on disk.
 */
export async function openFresh(
  dir: FileSystemDirectoryHandle,
  name: () => string,
  patienceMs = OPEN_PATIENCE_MS,
  attempts = OPEN_ATTEMPTS,
): Promise<{ sync: SyncHandle; name: string }> {
  for (let attempt = 1; ; attempt++) {
    const chosen = name();
    const opening = openSync(dir, chosen);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), patienceMs)));
    const outcome = await Promise.race([opening, late]).finally(() => clearTimeout(timer));
    if (outcome !== 'late') return { sync: outcome, name: chosen };
    opening.then(
      (sync) => {
        sync.close();
        void removeStaged(dir, chosen);
      },
      () => void removeStaged(dir, chosen),
    );
    if (attempt >= attempts) {
      throw new DOMException(
        `The browser did not open a file in its private storage within ${patienceMs >= 1000 ? `${Math.round(patienceMs / 1000)} s` : `${patienceMs} ms`}, ${attempts} times.`,
        'TimeoutError',
      );
    }
  }
}

/** Writes all of `chunk` at `at`; a short write (a full disk) throws the browser's QuotaExceededError. */
export function writeAll(sync: SyncHandle, chunk: Uint8Array, at: number): void {
  let done = 0;
  while (done < chunk.byteLength) {
    const n = sync.write(done === 0 ? chunk : chunk.subarray(done), { at: at + done });
    if (n <= 0) throw new DOMException('The file system refused to write more.', 'QuotaExceededError');
    done += n;
  }
}

/** The staged file as a disk-backed File; undefined when it is gone. */
export async function stagedFile(dir: FileSystemDirectoryHandle, name: string): Promise<File | undefined> {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch {
    return undefined;
  }
}

/** Removes a staged file; a missing one is not an error. */
export async function removeStaged(dir: FileSystemDirectoryHandle | undefined, name: string): Promise<void> {
  if (!dir) return;
  await dir.removeEntry(name).catch(() => undefined);
}

/** Every file name in the staging directory. */
export async function stagedNames(dir: FileSystemDirectoryHandle): Promise<string[]> {
  const names: string[] = [];
  for await (const name of (dir as FileSystemDirectoryHandle & { keys(): AsyncIterable<string> }).keys()) names.push(name);
  return names;
}

/** Bytes read back from a staged file through one reused buffer, in order; the reader must be done with a chunk before asking for the next. */
export function readBack(
  sync: SyncHandle,
  size: number,
  bufferBytes = 1024 * 1024,
  from = 0,
  into?: Uint8Array,
): ReadableStream<Uint8Array> {
  // `into`: a buffer the caller reuses across calls (it reads one range at a time, each to its end).
  const buffer = into?.byteLength ? into : new Uint8Array(Math.max(1, Math.min(bufferBytes, size - from)));
  let at = from;
  // highWaterMark 0: nothing is read ahead, so the buffer is refilled only when the previous
  // chunk was consumed (pump() awaits each chunk's hashing and writing before reading on).
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (at >= size) {
          controller.close();
          return;
        }
        const n = sync.read(buffer.subarray(0, Math.min(buffer.byteLength, size - at)), { at });
        if (n <= 0) {
          controller.error(new Error(`A staged range ended after ${at} of ${size} bytes.`));
          return;
        }
        at += n;
        controller.enqueue(buffer.subarray(0, n));
      },
    },
    { highWaterMark: 0 },
  );
}
