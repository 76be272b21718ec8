// The pull worker's side of saving: a destination takes the archive in order (core ArchiveSink),
// becomes final only on close() and leaves nothing finished-looking on abort(). One module per
// destination; the page chooses which (choose.ts), the worker opens it here.
import { ErrorCode, LongshoreError } from '../../core/errors.ts';
import type { ArchiveSink } from '../../core/formats/stream.ts';

export interface TarDestination extends Omit<ArchiveSink, 'write' | 'copy' | 'follow'> {
  write(bytes: Uint8Array): Promise<void>;
  /** Append the stored, verified blob `key` (`size` bytes) from byte `from` on (default 0). */
  copy(key: string, size: number, from?: number): Promise<void>;
  /**
   * Move where write() and copy() go next to byte `position` of the archive: back, so what follows
   * is written again (a blob written as it arrived that then started over), or past a blob placed
   * by `positional`. Absent where bytes once written cannot be taken back.
   */
  seek?(position: number): Promise<void>;
  /**
   * A destination that can take bytes at any place (a picked file: it becomes final only on close):
   * `writeAt`/`copyAt` write at byte `position` of the archive without moving where write() and
   * copy() go next, so each blob goes in as soon as it comes, in whatever order the blobs finish.
   * `reserve` first sizes it to the whole archive. Absent where the archive can only be appended to
   * (a download, a Blob).
   */
  positional?: {
    reserve(size: number): Promise<void>;
    /** `bytes` at `position`; a Blob (a disk-backed range of a blob) is copied by the browser. */
    writeAt(position: number, bytes: Uint8Array | Blob): Promise<void>;
    /** The stored, verified blob `key` (`size` bytes) from byte `from` on, at `position`. */
    copyAt(position: number, key: string, size: number, from?: number): Promise<void>;
  };
  /**
   * Resolves once the destination has read every stored blob handed to copy()/copyAt() so far, so
   * their stored files may go. Absent: a copy has read its blob when it resolves (a picked file);
   * a streamed download reads each blob after copy() returned, when the browser asks for it.
   */
  released?(): Promise<void>;
  /** Everything was written and verified: make the file final. A Blob destination returns its Blob. */
  close(): Promise<Blob | undefined>;
  /** Discard what was written (the pull failed or was cancelled). Never throws. */
  abort(reason: unknown): Promise<void>;
}

/** Stored verified blobs as the destinations read them: whole (disk-backed Blob) or as a stream. */
export interface StoredBlobs {
  getBlob(key: string): Promise<Blob | undefined>;
}

/** Stored blob `key`, checked to be `size` bytes, from byte `from` on. */
export async function storedBlob(store: StoredBlobs, key: string, size: number, from = 0): Promise<Blob> {
  const blob = await store.getBlob(key);
  if (!blob)
    throw new LongshoreError(ErrorCode.Store, `Blob ${key} vanished from the browser cache while saving.`, {
      hint: 'Pull again; the browser may have evicted storage.',
      retryable: true,
      data: { key },
    });
  if (blob.size !== size)
    throw new LongshoreError(ErrorCode.Store, `Cached blob ${key} is ${blob.size} bytes, expected ${size}.`, {
      retryable: true,
      data: { key },
    });
  return from > 0 ? blob.slice(from) : blob;
}

/** A DOMException from a file system call as a LongshoreError saying which destination failed. */
export function saveError(err: unknown, what: string): LongshoreError {
  if (err instanceof LongshoreError) return err;
  const name = err instanceof Error ? err.name : '';
  const message = err instanceof Error ? err.message : String(err);
  if (name === 'AbortError') return new LongshoreError(ErrorCode.Aborted, `Saving ${what} was cancelled.`);
  const hint =
    name === 'QuotaExceededError'
      ? 'The disk is full, or the browser’s storage quota is used up. Free space and pull again.'
      : name === 'NotAllowedError'
        ? 'The browser no longer allows writing there. Pull again and choose the destination again.'
        : 'Pull again; if it keeps failing, choose another destination.';
  return new LongshoreError(ErrorCode.Store, `Writing ${what} failed: ${name ? `${name}: ` : ''}${message}`, { hint, cause: err });
}
