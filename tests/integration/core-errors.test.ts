// How the core pull engine fails, against real registries: what distribution itself answers for unknown names
// and digests, and what a misbehaving hop in front of it (tests/helpers/tamper-proxy.ts) does to a pull:
// corrupted, truncated and stalled blobs, 429/503 before the real answer, altered manifests.
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { Image, Layer } from '../../src/core/image/model.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull, pullLayers } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import type { RetryPolicy } from '../../src/core/http/retry.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { run } from '../helpers/command.ts';
import { pseudoRandomBytes } from '../helpers/fixtures.ts';
import { sha256Digest } from '../helpers/images.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { rejection } from '../helpers/assert.ts';

const env = inject('registryEnv');

interface Setup {
  source: RemoteSource;
  client: RegistryClient;
  /** URLs the injected fetch was asked for. */
  sent: string[];
  /** The Range header of each request, in order ('' when none). */
  ranges: string[];
  /** Delays the client's retry policy asked to sleep, in ms (nothing really waits). */
  sleeps: number[];
}

function setup(retry: Partial<RetryPolicy> = {}): Setup {
  const sent: string[] = [];
  const ranges: string[] = [];
  const sleeps: number[] = [];
  const fetch = (input: string, init?: RequestInit): Promise<Response> => {
    sent.push(input);
    ranges.push(new Headers(init?.headers).get('range') ?? '');
    return globalThis.fetch(input, init);
  };
  const client = new RegistryClient({ transport: { fetch }, retry: { sleep: async (ms) => void sleeps.push(ms), ...retry } });
  return { source: new RemoteSource(client), client, sent, ranges, sleeps };
}

interface TruthDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function truthLayers(name: 'v2s2' | 'oci'): TruthDescriptor[] {
  return (JSON.parse(env.fixtures[name].manifest.raw) as { layers: TruthDescriptor[] }).layers;
}

/** v2s2's first layer: 256 KiB of incompressible data, so its body spans many chunks. */
function bigLayer(): TruthDescriptor {
  const layer = truthLayers('v2s2')[0]!;
  expect(layer.size).toBeGreaterThan(200 * 1024);
  return layer;
}

async function stored(store: MemoryBlobStore, key: string): Promise<Buffer> {
  const stream = (await store.open(key))!;
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Every key the store holds is the sha256 of what it holds: nothing partial or corrupted was kept. */
async function expectOnlyVerified(store: MemoryBlobStore): Promise<void> {
  for (const key of store.keys()) expect(sha256Digest(await stored(store, key)), key).toBe(key);
}

/** Rejects if `promise` has not settled within `ms` (a stalled pull must not hang the suite). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('what the real registry says about names and tags', () => {
  it('unknown tag → MANIFEST_UNKNOWN naming the reference, with a hint, not retryable', async () => {
    const ref = parseReference(`${env.anon.host}/test/oci:no-such-tag`);
    const error = await rejection(setup().source.resolve(ref));
    expect(error.code).toBe('MANIFEST_UNKNOWN');
    expect(error.message).toContain(ref.canonical);
    expect(error.hint).toMatch(/tag/);
    expect(error.retryable).toBe(false);
    expect(error.data).toMatchObject({ status: 404, repository: 'test/oci', errors: [{ code: 'MANIFEST_UNKNOWN' }] });
  });

  it('unknown repository: distribution 2.8 says MANIFEST_UNKNOWN for the manifest', async () => {
    const ref = parseReference(`${env.anon.host}/test/no-such-repository:latest`);
    const manifest = await rejection(setup().source.resolve(ref));
    // The registry's own answer (not a guess of ours): 404 {"errors":[{"code":"MANIFEST_UNKNOWN",…}]}.
    expect(manifest.data).toMatchObject({ status: 404, errors: [{ code: 'MANIFEST_UNKNOWN' }] });
    expect(manifest.code).toBe('MANIFEST_UNKNOWN');
    expect(manifest.message).toContain(ref.canonical);
    expect(manifest.hint).toContain('test/no-such-repository');
    expect(manifest.retryable).toBe(false);
  });

  it('unknown repository behind the token registry: a token is granted, then MANIFEST_UNKNOWN', async () => {
    const error = await rejection(setup().source.resolve(parseReference(`${env.token.host}/test/no-such-repository:latest`)));
    expect(error.code).toBe('MANIFEST_UNKNOWN');
    expect(error.hint).toBeTruthy();
  });

  it('an invalid name → INVALID_REFERENCE before any request', async () => {
    const { source, sent } = setup();
    const attempt = async () => pull(source, parseReference(`${env.anon.host}/Test/UPPER:latest`), { store: new MemoryBlobStore() });
    const error = await rejection(attempt());
    expect(error.code).toBe('INVALID_REFERENCE');
    expect(error.hint).toBeTruthy();
    expect(sent).toEqual([]);
  });
});

describe('digest pinning', () => {
  it('repo@<digest> pulls the pinned manifest', async () => {
    const truth = env.fixtures.oci;
    const ref = parseReference(`${env.anon.host}/${truth.repository}@${truth.manifest.digest}`);
    const store = new MemoryBlobStore();
    const { image } = await pull(setup().source, ref, { store });
    expect(image.digest).toBe(truth.manifest.digest);
    expect(Buffer.from(image.manifestBytes).equals(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(true);
    for (const layer of truthLayers('oci')) expect(sha256Digest(await stored(store, layer.digest))).toBe(layer.digest);
  });

  it('repo@<well-formed digest of nothing there> → the registry says MANIFEST_UNKNOWN', async () => {
    const wrong = sha256Digest('not a manifest in this registry');
    const ref = parseReference(`${env.anon.host}/test/oci@${wrong}`);
    const error = await rejection(setup().source.resolve(ref));
    expect(error.data).toMatchObject({ status: 404, errors: [{ code: 'MANIFEST_UNKNOWN' }] });
    expect(error.code).toBe('MANIFEST_UNKNOWN');
    expect(error.message).toContain(wrong);
  });
});

describe('through a misbehaving hop', () => {
  let proxy: TamperProxy;
  beforeAll(async () => {
    proxy = await startTamperProxy(env.anon.url);
  });
  afterAll(async () => {
    await proxy?.close();
  });
  beforeEach(() => {
    proxy.rules = {};
    proxy.requests.length = 0;
  });
  const viaProxy = (path: string) => parseReference(`${proxy.host}/${path}`);

  it('a corrupted blob → DIGEST_MISMATCH naming both digests, and nothing kept under it', async () => {
    const layer = bigLayer();
    const offset = Math.floor(layer.size / 2);
    proxy.rules = { corruptBlob: { digest: layer.digest, offset } };
    // What the corrupted body hashes to, computed from the blob as the registry serves it.
    const served = Buffer.from(await (await fetch(`${env.anon.url}/v2/test/v2s2/blobs/${layer.digest}`)).arrayBuffer());
    expect(sha256Digest(served)).toBe(layer.digest);
    served[offset] = served[offset]! ^ 0xff;
    const corrupted = sha256Digest(served);

    const store = new MemoryBlobStore();
    const error = await rejection(pull(setup().source, viaProxy(env.fixtures.v2s2.path), { store }));
    expect(error.code).toBe('DIGEST_MISMATCH');
    expect(error.message).toContain(layer.digest);
    expect(error.message).toContain(corrupted);
    expect(error.data).toMatchObject({ expected: layer.digest, actual: corrupted });
    expect(error.hint).toBeTruthy();
    expect(proxy.requests.some((r) => r.action === 'corrupt')).toBe(true);
    expect(store.keys()).not.toContain(layer.digest);
    await expectOnlyVerified(store);
  });

  it('a corrupted blob is not kept under its diff_id either (uncompressed pull)', async () => {
    const layer = bigLayer();
    const diffId = (JSON.parse(env.fixtures.v2s2.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
    proxy.rules = { corruptBlob: { digest: layer.digest } };
    const store = new MemoryBlobStore();
    const error = await rejection(pull(setup().source, viaProxy(env.fixtures.v2s2.path), { store, uncompressed: true }));
    // The flipped byte breaks the gzip stream or its digest; either way the compressed digest or the inflater says so.
    expect(error.code).toBe('DIGEST_MISMATCH');
    expect(store.keys()).not.toContain(layer.digest);
    expect(store.keys()).not.toContain(diffId);
    await expectOnlyVerified(store);
  });

  it('a blob whose gzip header was altered leaves nothing when only the diff_id is kept (keepCompressed: false)', async () => {
    const layer = bigLayer();
    const diffId = (JSON.parse(env.fixtures.v2s2.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
    // Byte 4 is the gzip header's MTIME: the layer still inflates to exactly its diff_id, so only
    // the compressed digest can tell, and the uncompressed copy must not be kept either.
    proxy.rules = { corruptBlob: { digest: layer.digest, offset: 4 } };
    const store = new MemoryBlobStore();
    const error = await rejection(
      pull(setup().source, viaProxy(env.fixtures.v2s2.path), { store, uncompressed: true, keepCompressed: false }),
    );
    expect(error.code).toBe('DIGEST_MISMATCH');
    expect(proxy.requests.some((r) => r.action === 'corrupt')).toBe(true);
    expect(store.keys()).not.toContain(diffId);
    await expectOnlyVerified(store);
  });

  it('a blob cut short with a clean end is continued with Range from where it stopped', async () => {
    const layer = bigLayer();
    proxy.rules = { truncateBlob: { digest: layer.digest, keepBytes: 100_000, mode: 'short' } };
    const store = new MemoryBlobStore();
    const { source, sent, ranges } = setup();
    await pull(source, viaProxy(env.fixtures.v2s2.path), { store });
    const asked = sent.map((url, i) => [url, ranges[i]] as const).filter(([url]) => url.includes(layer.digest));
    expect(asked.map(([, range]) => range)).toEqual(['', 'bytes=100000-']);
    expect(await store.has(layer.digest)).toBe(true);
    await expectOnlyVerified(store);
  });

  it('a connection dropped mid-blob → resumed with Range; only the missing bytes cross the wire again', async () => {
    const layer = bigLayer();
    proxy.rules = { truncateBlob: { digest: layer.digest, keepBytes: 100_000, mode: 'close' } };
    const store = new MemoryBlobStore();
    const { source, sent, ranges } = setup();
    await pull(source, viaProxy(env.fixtures.v2s2.path), { store });
    expect(proxy.requests.filter((r) => r.path.includes(layer.digest)).map((r) => r.action)).toEqual(['truncate', 'forward']);
    const asked = sent.map((url, i) => [url, ranges[i]] as const).filter(([url]) => url.includes(layer.digest));
    // Where the client resumed depends on how much had reached it when the socket closed: never 0, never past the cut.
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(asked[1]![1] ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(100_000);
    expect(sha256Digest(await stored(store, layer.digest))).toBe(layer.digest);
  });

  // Regression: undici's TypeError("terminated") used to reach pull() raw as INTERNAL and was not retried.
  it('a connection dropped every time, with no retries left → a typed, retryable NETWORK error; the blob is not visible, its prefix kept as a partial', async () => {
    const layer = bigLayer();
    proxy.rules = { truncateBlob: { digest: layer.digest, keepBytes: 100_000, mode: 'close' } };
    const store = new MemoryBlobStore();
    const error = await rejection(pull(setup({ retries: 0 }).source, viaProxy(env.fixtures.v2s2.path), { store }));
    expect(error.code).toBe('NETWORK');
    expect(error.retryable).toBe(true);
    expect(error.hint).toBeTruthy();
    expect(proxy.requests.filter((r) => r.path.includes(layer.digest))).toHaveLength(1);
    expect(store.keys()).not.toContain(layer.digest);
    const partial = store.listPartials().find((p) => p.key === layer.digest);
    expect(partial?.done).toBeGreaterThan(0);
    expect(partial?.done).toBeLessThanOrEqual(100_000);
    await expectOnlyVerified(store);
  });

  it('a blob that breaks every time costs 1 + retries requests in all (one retry layer), with jittered exponential waits', async () => {
    const layer = bigLayer();
    proxy.rules = { truncateBlob: { digest: layer.digest, keepBytes: 0, mode: 'close' } };
    const store = new MemoryBlobStore();
    const { source, sleeps } = setup({ retries: 3, random: () => 0.25 });
    const error = await rejection(pull(source, viaProxy(env.fixtures.v2s2.path), { store }));
    expect(error.code).toBe('NETWORK');
    expect(proxy.requests.filter((r) => r.path.includes(layer.digest))).toHaveLength(4);
    // 500·2^i ms, half fixed and half jitter (random() = 0.25 here).
    expect(sleeps).toEqual([312.5, 625, 1250].map(Math.round));
  });

  it('429 with Retry-After: 1 → waits 1000 ms, then reads the real manifest', async () => {
    proxy.rules = { failManifests: { status: 429, count: 1, retryAfter: '1' } };
    const { source, sleeps } = setup();
    const image = (await source.resolve(viaProxy(env.fixtures.oci.path))) as Image;
    expect(image.digest).toBe(env.fixtures.oci.manifest.digest);
    expect(sleeps).toEqual([1000]);
    expect(proxy.requests.filter((r) => r.path.includes('/manifests/')).map((r) => r.action)).toEqual(['fail', 'forward']);
  });

  it('more 429s than retries → TOOMANYREQUESTS, retryable, with a rate-limit hint', async () => {
    proxy.rules = { failManifests: { status: 429, count: 10, retryAfter: '1' } };
    const { source, sleeps } = setup({ retries: 2 });
    const error = await rejection(source.resolve(viaProxy(env.fixtures.oci.path)));
    expect(error.code).toBe('TOOMANYREQUESTS');
    expect(error.retryable).toBe(true);
    expect(error.hint).toMatch(/rate-limit/i);
    expect(error.data).toMatchObject({ status: 429, retryAfter: '1' });
    expect(sleeps).toEqual([1000, 1000]);
    expect(proxy.requests.filter((r) => r.action === 'fail')).toHaveLength(3);
  });

  it('503 once → retried after a backoff, then succeeds', async () => {
    proxy.rules = { failManifests: { status: 503, count: 1 } };
    const { source, sleeps } = setup();
    const image = (await source.resolve(viaProxy(env.fixtures.oci.path))) as Image;
    expect(image.digest).toBe(env.fixtures.oci.manifest.digest);
    expect(sleeps).toHaveLength(1);
    expect(sleeps[0]).toBeGreaterThan(0);
  });

  it('aborting mid-blob rejects with ABORTED promptly and keeps no partial blob', async () => {
    const layer = bigLayer();
    proxy.rules = { stallBlob: { digest: layer.digest, afterBytes: 64 * 1024 } };
    const store = new MemoryBlobStore();
    const controller = new AbortController();
    let abortedAt = 0;
    const pulling = pull(setup().source, viaProxy(env.fixtures.v2s2.path), {
      store,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === 'layer' && e.digest === layer.digest && e.state === 'downloading' && e.done > 0 && !controller.signal.aborted) {
          abortedAt = performance.now();
          controller.abort();
        }
      },
    });
    // The stalled body never ends by itself: only the abort can settle this pull.
    const error = await rejection(within(pulling, 10_000, 'the aborted pull'));
    expect(abortedAt).toBeGreaterThan(0);
    expect(error.code).toBe('ABORTED');
    expect(proxy.requests.some((r) => r.action === 'stall')).toBe(true);
    expect(store.keys()).not.toContain(layer.digest);
    await expectOnlyVerified(store);
  });

  it('a manifest altered on the way: pinned → DIGEST_MISMATCH against the pin; by tag → against Docker-Content-Digest', async () => {
    const truth = env.fixtures.oci;
    proxy.rules = { corruptManifests: true };
    const pinned = await rejection(setup().source.resolve(viaProxy(`${truth.repository}@${truth.manifest.digest}`)));
    expect(pinned.code).toBe('DIGEST_MISMATCH');
    expect(pinned.data['expected']).toBe(truth.manifest.digest);
    expect(pinned.message).toContain(truth.manifest.digest);

    const tagged = await rejection(setup().source.resolve(viaProxy(truth.path)));
    expect(tagged.code).toBe('DIGEST_MISMATCH');
    expect(tagged.data['expected']).toBe(truth.manifest.digest);
    expect(tagged.data['actual']).not.toBe(truth.manifest.digest);
  });
});

describe('found while testing (a synthetic layer: no registry serves a zstd layer this large)', () => {
  // Regression: decompress() used to throw FORMAT without cancelling the peeked branch, and fanOut()
  // then waited on that branch's backpressure forever once the layer exceeded the pipes' buffers.
  it('uncompressed pull of a 2 MiB zstd layer without a decoder fails with FORMAT instead of hanging', async () => {
    const plain = pseudoRandomBytes(2 * 1024 * 1024, 'zstd-without-decoder');
    const compressed = await run('zstd', ['-c', '-1'], { input: plain });
    const layer: Layer = {
      descriptor: {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
        digest: sha256Digest(compressed),
        size: compressed.byteLength,
      },
      index: 0,
      diffId: sha256Digest(plain),
      open: async () =>
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (let at = 0; at < compressed.byteLength; at += 16 * 1024)
              controller.enqueue(new Uint8Array(compressed.subarray(at, at + 16 * 1024)));
            controller.close();
          },
        }),
    };
    const store = new MemoryBlobStore();
    const error = await rejection(
      within(
        pullLayers(
          { layers: [layer], reference: parseReference(`127.0.0.1:1/synthetic/zstd@${layer.descriptor.digest}`) } as unknown as Image,
          { store, uncompressed: true, zstd: null },
        ),
        3_000,
        'the pull',
      ),
    );
    expect(error.code).toBe('FORMAT');
    expect(store.keys()).not.toContain(layer.diffId);
  });
});
