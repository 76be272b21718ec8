// The last fallback: the archive as one Blob composed of header bytes and the stored (disk-backed)
// Blobs, offered for download when the pull ends. No layer is copied into JS memory.
import { ErrorCode, LongshoreError } from '../../core/errors.ts';
import type { TarDestination, StoredBlobs } from './destination.ts';
import { storedBlob } from './destination.ts';

export function openBlobDestination(store: StoredBlobs, plannedSize?: number): TarDestination {
  let parts: BlobPart[] = [];
  return {
    async write(bytes) {
      parts.push(bytes as Uint8Array<ArrayBuffer>);
    },
    async copy(key, size, from = 0) {
      parts.push(await storedBlob(store, key, size, from));
    },
    async close() {
      const blob = new Blob(parts, { type: 'application/x-tar' });
      parts = [];
      if (plannedSize !== undefined && blob.size !== plannedSize)
        throw new LongshoreError(ErrorCode.Internal, `Assembled ${blob.size} bytes, planned ${plannedSize}.`);
      return blob;
    },
    async abort() {
      parts = [];
    },
  };
}
