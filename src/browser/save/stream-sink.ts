// The pull worker's end of a streamed download: archive bytes go over a MessagePort to the service
// worker (sw.ts), which serves them as the body of a download. The service worker grants credit as
// the browser takes bytes, so a slow disk holds the pull's writer back instead of filling memory.
// A failure posts an error, which errors the response body: the browser marks the download failed.
import { ErrorCode, LongshoreError } from '../../core/errors.ts';
import { storedBlob, type TarDestination, type StoredBlobs } from './destination.ts';
import type { FromSaveWorker, ToSaveWorker } from './types.ts';

/** How long the browser may take to start the download (the service worker's first credit). */
export const DOWNLOAD_START_TIMEOUT_MS = 30_000;
/** Largest chunk posted at once, and the size of the buffers that carry them. */
export const CHUNK_BYTES = 1024 * 1024;
/**
 * Buffers kept for reuse. Each chunk travels in a buffer the service worker hands back once the
 * download has taken it: a new 1 MiB buffer per chunk (as before) left 1.5 GB of garbage per
 * 1.5 GB pulled, and the collector let up to 344 MB of it pile up in the renderer
 * (memory-infra, partition_alloc/partitions/array_buffer) before it ran.
 */
const POOL_MAX = 16;

interface Options {
  store: StoredBlobs;
  fileName: string;
  signal?: AbortSignal;
  startTimeoutMs?: number;
}

export function openStreamDestination(port: MessagePort, options: Options): TarDestination {
  let credit = 0;
  let started = false;
  let finished = false;
  let cancelled = false;
  let failure: string | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const pool: ArrayBuffer[] = [];
  /** Stored blobs posted by reference, and how many of them the service worker has read through. */
  let blobsSent = 0;
  let blobsRead = 0;
  /** released() callers: each waits until `blobsRead` reaches its count (or the download ends). */
  let readers: { upTo: number; resolve: () => void }[] = [];
  const settleReaders = (all = false) => {
    const left: typeof readers = [];
    for (const r of readers) {
      if (all || blobsRead >= r.upTo) r.resolve();
      else left.push(r);
    }
    readers = left;
  };
  port.onmessage = (e: MessageEvent<FromSaveWorker>) => {
    const m = e.data;
    if (m.t === 'back') {
      if (pool.length < POOL_MAX && m.b.byteLength === CHUNK_BYTES) pool.push(m.b);
      return;
    }
    if (m.t === 'read') {
      blobsRead++;
      settleReaders();
      return;
    }
    if (m.t === 'credit') {
      started = true;
      credit += m.n;
    } else if (m.t === 'done') finished = true;
    else if (m.t === 'cancel') cancelled = true;
    else failure = m.message;
    notify();
  };
  const post = (m: ToSaveWorker, transfer: Transferable[] = []) => port.postMessage(m, transfer);
  const cancelledError = () => new LongshoreError(ErrorCode.Aborted, `The download of ${options.fileName} was cancelled in the browser.`);

  const waitFor = async (until: () => boolean, what: string, timeoutMs?: number) => {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    while (!until()) {
      if (cancelled) throw cancelledError();
      if (failure !== undefined) {
        throw new LongshoreError(ErrorCode.Internal, `The streamed download could not start: ${failure}`, {
          hint: 'Choose another place to save (“when the pull ends” always works) and pull again.',
        });
      }
      options.signal?.throwIfAborted();
      const left = deadline === undefined ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) {
        throw new LongshoreError(ErrorCode.Internal, `The browser did not ${what} within ${Math.round((timeoutMs ?? 0) / 1000)} s.`, {
          hint: 'The service worker that serves streamed downloads did not answer. Reload the page, or choose “when the pull ends”.',
        });
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        const timer = left === undefined ? setTimeout(resolve, 1000) : setTimeout(resolve, Math.min(left, 1000));
        options.signal?.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  };

  const send = async (bytes: Uint8Array) => {
    for (let offset = 0; offset < bytes.byteLength; offset += CHUNK_BYTES) {
      await waitFor(
        () => credit > 0 && !cancelled,
        'start the download',
        started ? undefined : (options.startTimeoutMs ?? DOWNLOAD_START_TIMEOUT_MS),
      );
      const piece = bytes.subarray(offset, offset + CHUNK_BYTES);
      const buffer = pool.pop() ?? new ArrayBuffer(CHUNK_BYTES);
      const own = new Uint8Array(buffer, 0, piece.byteLength);
      own.set(piece);
      credit -= own.byteLength;
      post({ t: 'chunk', b: own }, [buffer]);
    }
  };

  return {
    async write(bytes) {
      // Copied into a buffer of the pool: the caller keeps its own (a tail hands it back to its layer worker).
      await send(bytes);
    },
    async copy(key, size, from = 0) {
      // The stored (disk-backed) Blob goes by reference; the service worker reads it as its turn
      // in the body comes. Credit is charged for its whole size, so the next part waits until the
      // browser has taken most of it.
      const blob = await storedBlob(options.store, key, size, from);
      await waitFor(
        () => credit > 0 && !cancelled,
        'start the download',
        started ? undefined : (options.startTimeoutMs ?? DOWNLOAD_START_TIMEOUT_MS),
      );
      credit -= blob.size;
      post({ t: 'blob', b: blob });
      blobsSent++;
    },
    released() {
      if (blobsRead >= blobsSent) return Promise.resolve();
      return new Promise<void>((resolve) => readers.push({ upTo: blobsSent, resolve }));
    },
    async close() {
      post({ t: 'end' });
      // The service worker answers `done` once the browser has read the last byte.
      await waitFor(() => finished, 'finish the download', DOWNLOAD_START_TIMEOUT_MS);
      port.close();
      // Every byte was taken: whatever a service worker without `read` messages held is read too.
      settleReaders(true);
      return undefined;
    },
    async abort(reason) {
      try {
        const message = reason instanceof Error ? reason.message : String(reason);
        post({ t: 'error', message });
      } catch {
        // the port may be closed already
      }
      port.close();
      // The download failed: nothing will read the blobs any more.
      settleReaders(true);
    },
  };
}
