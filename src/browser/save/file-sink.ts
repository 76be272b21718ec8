// A file the user picked (File System Access, showSaveFilePicker), written from the pull worker.
// createWritable() writes to a temporary file the browser swaps in only on close(); abort()
// drops it. Stored blobs are written as disk-backed Blobs, so layers never pass through JS memory.
// Every write names its position: the archive's own order (write/copy/seek) keeps a cursor, and
// blobs that finish before their turn go straight to their places (positional).
import type { TarDestination, StoredBlobs } from './destination.ts';
import { saveError, storedBlob } from './destination.ts';

export async function openFileDestination(handle: FileSystemFileHandle, store: StoredBlobs): Promise<TarDestination> {
  const what = `to ${handle.name}`;
  let created = false;
  let writable: FileSystemWritableFileStream;
  try {
    // The picker creates an empty file for a new name: that one is removed again on failure; a
    // file that held something before keeps its old content (the swap file never replaces it).
    created = (await handle.getFile()).size === 0;
    writable = await handle.createWritable();
  } catch (err) {
    throw saveError(err, what);
  }
  let cursor = 0;
  /** The file's length: sized ahead of a blob, so its writes never grow the file (below). */
  let length = 0;
  const put = async (position: number, data: Uint8Array | Blob) => {
    length = Math.max(length, position + (data instanceof Blob ? data.size : data.byteLength));
    try {
      await writable.write({ type: 'write', position, data: data as Uint8Array<ArrayBuffer> | Blob });
    } catch (err) {
      throw saveError(err, what);
    }
  };
  /**
   * Size the file to `end` before a blob's write: a write that grows a file in the browser's own
   * storage (the origin private file system) has its quota accounted per 32 KiB the browser writes
   * (the bench and the tests answer the picker with such a file); one resize first costs that once.
   */
  const grow = async (end: number) => {
    if (end <= length) return;
    try {
      await writable.truncate(end);
    } catch (err) {
      throw saveError(err, what);
    }
    length = end;
  };
  return {
    async write(bytes) {
      const at = cursor;
      cursor += bytes.byteLength;
      await put(at, bytes);
    },
    async copy(key, size, from = 0) {
      const blob = await storedBlob(store, key, size, from);
      const at = cursor;
      cursor += blob.size;
      await grow(cursor);
      await put(at, blob);
    },
    async seek(position) {
      cursor = position;
    },
    positional: {
      reserve: grow,
      writeAt: (position, bytes) => put(position, bytes),
      async copyAt(position, key, size, from = 0) {
        await put(position, await storedBlob(store, key, size, from));
      },
    },
    async close() {
      try {
        await writable.close();
      } catch (err) {
        throw saveError(err, what);
      }
      return undefined;
    },
    async abort(reason) {
      await writable.abort(reason).catch(() => undefined);
      // FileSystemHandle.remove() is Chromium's (not in every TS DOM lib yet).
      if (created) await (handle as FileSystemFileHandle & { remove?: () => Promise<void> }).remove?.().catch(() => undefined);
    },
  };
}
