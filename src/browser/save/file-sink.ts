// A file the user picked (File System Access, showSaveFilePicker), written from the pull worker.
// createWritable() writes to a temporary file the browser swaps in only on close(); abort()
// drops it. Stored blobs are written as disk-backed Blobs, so layers never pass through JS memory.
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
  return {
    async write(bytes) {
      try {
        await writable.write(bytes as Uint8Array<ArrayBuffer>);
      } catch (err) {
        throw saveError(err, what);
      }
    },
    async copy(key, size, from = 0) {
      const blob = await storedBlob(store, key, size, from);
      try {
        await writable.write(blob);
      } catch (err) {
        throw saveError(err, what);
      }
    },
    async rewind(position) {
      try {
        await writable.seek(position);
      } catch (err) {
        throw saveError(err, what);
      }
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
