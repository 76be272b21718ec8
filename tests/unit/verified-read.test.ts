// Trust in stored blobs: a blob whose bytes no longer hash to its key is dropped when read, never served.
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/core/digest.ts';
import { LongshoreError } from '../../src/core/errors.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { checkStored, openVerified, verifiedStore } from '../../src/core/store/verified-read.ts';

const streamOf = (bytes: Uint8Array) => new Response(bytes as BodyInit).body!;

async function stored(good: boolean): Promise<{ store: MemoryBlobStore; key: string }> {
  const bytes = new TextEncoder().encode('layer bytes '.repeat(1000));
  const key = await sha256(bytes);
  const store = new MemoryBlobStore();
  const kept = good ? bytes : bytes.slice();
  if (!good) kept[5]! ^= 0xff; // one flipped byte, as disk rot or a tampered profile leaves it
  await store.put(key, streamOf(kept));
  return { store, key };
}

describe('verified reads of stored blobs', () => {
  it('checkStored: ok for a sound blob, dropped (and deleted) for a damaged one, missing when absent', async () => {
    const sound = await stored(true);
    expect(await checkStored(sound.store, sound.key)).toBe('ok');
    expect(await sound.store.has(sound.key)).toBe(true);
    const bad = await stored(false);
    expect(await checkStored(bad.store, bad.key)).toBe('dropped');
    expect(await bad.store.has(bad.key)).toBe(false);
    expect(await checkStored(bad.store, bad.key)).toBe('missing');
  });

  it('openVerified: a damaged blob errors with DIGEST_MISMATCH at its end and is dropped', async () => {
    const bad = await stored(false);
    const dropped: string[] = [];
    const stream = (await openVerified(bad.store, bad.key, (k) => dropped.push(k)))!;
    const err = await new Response(stream).arrayBuffer().catch((e: unknown) => LongshoreError.from(e));
    expect(err).toBeInstanceOf(LongshoreError);
    expect((err as LongshoreError).code).toBe('DIGEST_MISMATCH');
    expect(dropped).toEqual([bad.key]);
    expect(await bad.store.has(bad.key)).toBe(false);
    const sound = await stored(true);
    expect((await new Response((await openVerified(sound.store, sound.key))!).arrayBuffer()).byteLength).toBe(12_000);
  });

  it('verifiedStore: has() says no for a damaged blob (so a pull fetches it again), once per key', async () => {
    const bad = await stored(false);
    const dropped: string[] = [];
    const store = verifiedStore(bad.store, { onDropped: (k) => dropped.push(k) });
    expect(await store.has(bad.key)).toBe(false);
    expect(await store.size(bad.key)).toBeUndefined();
    expect(dropped).toEqual([bad.key]);
    const sound = await stored(true);
    const opened: string[] = [];
    const counting = {
      ...sound.store,
      has: sound.store.has.bind(sound.store),
      size: sound.store.size.bind(sound.store),
      put: sound.store.put.bind(sound.store),
      delete: sound.store.delete.bind(sound.store),
      open: async (k: string) => {
        opened.push(k);
        return sound.store.open(k);
      },
    };
    const wrapped = verifiedStore(counting);
    expect(await wrapped.has(sound.key)).toBe(true);
    expect(await wrapped.has(sound.key)).toBe(true);
    expect(opened).toEqual([sound.key]);
  });
});
