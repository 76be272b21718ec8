// Trust in the cache: a stored blob is re-hashed when it is about to be used for an archive, and
// one that no longer matches its key (every key is a content digest: a layer's digest or diff_id)
// is dropped, so the pull fetches it again and the bad bytes never reach a download. Guards
// against disk corruption and a profile edited behind the app's back.
import { isDigest, verifyingStream } from '../digest.ts';
import { ErrorCode, LongshoreError, isAbortError } from '../errors.ts';
import { drain, type BlobStore } from './blob-store.ts';

export type StoredCheck = 'ok' | 'missing' | 'dropped';

/**
 * Read the stored `key` to its end through the digest verifier. A mismatch (or an unreadable
 * blob) deletes it and answers 'dropped'. Keys that are not sha256 digests cannot be checked and
 * count as 'ok' when present.
 */
export async function checkStored(store: BlobStore, key: string, signal?: AbortSignal): Promise<StoredCheck> {
  const stream = await store.open(key);
  if (!stream) return 'missing';
  if (!isDigest(key)) {
    await stream.cancel().catch(() => undefined);
    return 'ok';
  }
  try {
    await drain(stream.pipeThrough(verifyingStream({ digest: key, label: `cached blob ${key}` })), signal, () => undefined);
    return 'ok';
  } catch (err) {
    if (signal?.aborted || isAbortError(err)) throw err;
    await store.delete(key);
    return 'dropped';
  }
}

/**
 * The stored `key` as a stream that errors with DIGEST_MISMATCH (and drops the key) if the bytes
 * do not hash to it. A consumer that commits only on a clean end never keeps the bad bytes.
 */
export async function openVerified(
  store: BlobStore,
  key: string,
  onDropped?: (key: string) => void,
): Promise<ReadableStream<Uint8Array> | undefined> {
  const stream = await store.open(key);
  if (!stream || !isDigest(key)) return stream;
  const verify = verifyingStream({ digest: key, label: `cached blob ${key}` });
  const reader = stream.pipeThrough(verify).getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        const e = LongshoreError.from(err);
        if (e.code === ErrorCode.DigestMismatch || e.code === ErrorCode.SizeMismatch) {
          await store.delete(key).catch(() => undefined);
          onDropped?.(key);
          throw new LongshoreError(e.code, `The cached blob ${key} no longer matches its digest; it was dropped from the cache.`, {
            hint: 'The browser profile holds damaged data for this blob. Pull again: it will be fetched from the registry.',
            retryable: true,
            data: { ...e.data, key },
          });
        }
        throw err;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/**
 * A BlobStore whose has() first re-verifies a stored blob (once per key for this wrapper's
 * life): a damaged one is dropped and reported absent, so `pull` fetches it again before any
 * archive is planned. Use one wrapper per pull; blobs put through it are trusted (they were
 * verified while they streamed in).
 */
export function verifiedStore(store: BlobStore, options: { signal?: AbortSignal; onDropped?: (key: string) => void } = {}): BlobStore {
  const checked = new Map<string, Promise<boolean>>();
  const check = (key: string): Promise<boolean> => {
    let got = checked.get(key);
    if (!got) {
      got = checkStored(store, key, options.signal).then((r) => {
        if (r === 'dropped') options.onDropped?.(key);
        return r === 'ok';
      });
      // A failed check (aborted) is not remembered.
      got.catch(() => checked.delete(key));
      checked.set(key, got);
    }
    return got;
  };
  return {
    has: check,
    size: async (key) => ((await check(key)) ? store.size(key) : undefined),
    put: async (key, stream, signal) => {
      const n = await store.put(key, stream, signal);
      checked.set(key, Promise.resolve(true));
      return n;
    },
    open: (key) => openVerified(store, key, options.onDropped),
    delete: async (key) => {
      checked.delete(key);
      await store.delete(key);
    },
    // Resume and parallel ranges write through the wrapped store's own partial blobs; their
    // bytes are verified as they are committed, like put's.
    ...(store.openPartial ? { openPartial: store.openPartial.bind(store) } : {}),
    ...(store.createSpill ? { createSpill: store.createSpill.bind(store) } : {}),
  };
}
