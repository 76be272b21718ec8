// Offline pulls through the cached source, at the core level against a real registry: images are
// pulled through a relay in front of it, the relay is stopped, and the same tag (and a digest) is
// pulled again in every format, judged by skopeo. The catalog is the browser's ImageCatalog over a
// Map instead of IndexedDB; the BlobStore is the in-memory one.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { CachedSource, type CacheNote } from '../../src/core/image/cached-source.ts';
import { pull, pullIndex } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById, type SinkImage } from '../../src/core/formats/index.ts';
import { LongshoreError } from '../../src/core/errors.ts';
import { ImageCatalog, offlineFormats } from '../../src/browser/image-catalog.ts';
import { mapKV } from '../helpers/catalog-kv.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { validateDockerArchiveLayers, validateOciArchive } from '../helpers/validate-oci.ts';

const env = inject('registryEnv');
let dir: string;
let relay: TamperProxy;

function remote(): RemoteSource {
  // No retries: a stopped relay fails at once, as the page's offline test waits on the real policy.
  return new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch }, retry: { retries: 0 } }));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-offline-'));
  relay = await startTamperProxy(env.anon.url);
});
afterAll(async () => {
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

async function archive(format: string, images: SinkImage[], store: MemoryBlobStore, label: string): Promise<string> {
  const f = formatById(format)!;
  const plan = await f.plan(images, { size: async (k) => (await store.size(k))! });
  const file = join(dir, `${label}.${format}.tar`);
  await writeFile(file, new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer()));
  return file;
}

describe('offline: the cached source over a stopped registry', () => {
  it('a tag (an index) pulled once re-assembles in every format with the registry gone; a digest too; without the cache it fails', async () => {
    const fixture = env.fixtures.multi;
    const name = `${relay.host}/${fixture.path}`;
    const ref = parseReference(name);
    const store = new MemoryBlobStore();
    const catalog = new ImageCatalog(mapKV());

    const online = new CachedSource(remote(), catalog);
    const first = await pull(online, ref, { store });
    expect(online.seen.notes).toEqual([]);
    await catalog.recordPull(online.seen, [{ typed: name, image: first.image }], store);
    const [record] = await catalog.images();
    expect(record).toMatchObject({ digest: first.image.digest, name, platform: 'linux/amd64', indexDigest: fixture.manifest.digest });
    expect(record!.blobs.map((b) => b.key)).toEqual(first.image.layers.map((l) => l.descriptor.digest));
    expect(await catalog.tag(`${ref.name}:${ref.tag}`)).toMatchObject({ digest: fixture.manifest.digest });

    await relay.close();
    // Without the cache the pull cannot even resolve.
    const failed = await pull(remote(), ref, { store }).catch((e: unknown) => LongshoreError.from(e));
    expect(failed).toBeInstanceOf(LongshoreError);
    expect((failed as LongshoreError).code).toBe('NETWORK');

    const amd64 = fixture.children!.find((c) => c.platform.architecture === 'amd64')!;
    for (const format of ['docker', 'oci', 'tarball', 'legacy']) {
      const notes: CacheNote[] = [];
      const offline = new CachedSource(remote(), catalog, { onCached: (n) => notes.push(n) });
      const needsUncompressed = formatById(format)!.needsUncompressed;
      // legacy decompresses the stored compressed layers: no network needed for that either.
      const again = await pull(offline, ref, { store, uncompressed: needsUncompressed, keepCompressed: !needsUncompressed });
      expect(notes).toEqual([
        expect.objectContaining({
          reference: ref.canonical,
          reason: 'unreachable',
          digest: fixture.manifest.digest,
          cachedAt: expect.any(Number),
        }),
      ]);
      expect(again.image.digest).toBe(first.image.digest);
      const file = await archive(format, [{ image: again.image, reference: ref }], store, `multi-offline`);
      if (format === 'oci') {
        await validateOciArchive({
          file,
          storageDir: env.storageDir,
          skopeoEnv: env.skopeoEnv,
          target: amd64.manifest,
          config: amd64.config,
          annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
          umoci: { tag: 'latest', files: ['etc/longshore-arch', 'usr/bin/tool'] },
        });
      } else {
        await validateDockerArchiveLayers({
          file,
          storageDir: env.storageDir,
          skopeoEnv: env.skopeoEnv,
          images: [{ manifest: amd64.manifest, config: amd64.config, repoTags: [name] }],
          layers: needsUncompressed ? 'uncompressed' : 'compressed',
        });
      }
    }

    // A digest is content-addressed: it resolves from the cache first, with no network at all.
    const notes: CacheNote[] = [];
    const byDigest = parseReference(`${relay.host}/${fixture.repository}@${first.image.digest}`);
    const pinned = await pull(new CachedSource(remote(), catalog, { onCached: (n) => notes.push(n) }), byDigest, { store });
    expect(pinned.image.digest).toBe(first.image.digest);
    expect(notes).toEqual([expect.objectContaining({ reason: 'digest', digest: first.image.digest })]);
    const file = await archive('docker', [{ image: pinned.image, reference: byDigest }], store, 'multi-digest');
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [
        {
          manifest: amd64.manifest,
          config: amd64.config,
          repoTags: [`${relay.host}/${fixture.repository}:digest-${first.image.digest.slice(7)}`],
        },
      ],
      layers: 'compressed',
    });

    // A platform never pulled is not in the cache: the registry's error stands.
    const arm = await pull(new CachedSource(remote(), catalog), ref, {
      store,
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    }).catch((e: unknown) => LongshoreError.from(e));
    expect((arm as LongshoreError).code).toBe('NETWORK');
    relay = await startTamperProxy(env.anon.url);
  });

  it('after a legacy pull (uncompressed copies only) offline rebuilds legacy, and says docker/oci/tarball need the registry', async () => {
    const r = await startTamperProxy(env.anon.url);
    try {
      const name = `${r.host}/${env.fixtures.oci.path}`;
      const ref = parseReference(name);
      const store = new MemoryBlobStore();
      const catalog = new ImageCatalog(mapKV());
      const online = new CachedSource(remote(), catalog);
      const first = await pull(online, ref, { store, uncompressed: true, keepCompressed: false });
      await catalog.recordPull(online.seen, [{ typed: name, image: first.image }], store);
      const [record] = await catalog.images();
      expect(offlineFormats(record!, new Set(store.keys()))).toBe('uncompressed-only');
      await r.close();
      const legacy = await pull(new CachedSource(remote(), catalog), ref, { store, uncompressed: true, keepCompressed: false });
      const truth = env.fixtures.oci;
      const file = await archive('legacy', [{ image: legacy.image, reference: ref }], store, 'oci-legacy');
      await validateDockerArchiveLayers({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        images: [{ manifest: truth.manifest, config: truth.config, repoTags: [name] }],
        layers: 'uncompressed',
      });
      const docker = await pull(new CachedSource(remote(), catalog), ref, { store }).catch((e: unknown) => LongshoreError.from(e));
      expect((docker as LongshoreError).code).toBe('NETWORK');
    } finally {
      await r.close().catch(() => undefined);
    }
  });
});

describe('pullIndex offline', () => {
  it('every platform of an index pulled once is pulled again offline (oci, all platforms)', async () => {
    const r = await startTamperProxy(env.anon.url);
    const fixture = env.fixtures.multi;
    const name = `${r.host}/${fixture.path}`;
    const ref = parseReference(name);
    const store = new MemoryBlobStore();
    const catalog = new ImageCatalog(mapKV());
    const online = new CachedSource(remote(), catalog);
    const first = await pullIndex(online, ref, { store });
    const recorded = await catalog.recordPull(
      online.seen,
      [{ typed: name, image: first.image, ...(first.index ? { index: first.index } : {}) }],
      store,
    );
    expect(recorded.sort()).toEqual(first.index!.children.map((c) => c.digest).sort());
    await r.close();
    const again = await pullIndex(new CachedSource(remote(), catalog), ref, { store });
    expect(again.index!.index.digest).toBe(fixture.manifest.digest);
    const file = await archive('oci', [{ image: again.image, reference: ref, index: again.index! }], store, 'multi-all');
    const amd64 = fixture.children!.find((c) => c.platform.architecture === 'amd64')!;
    await validateOciArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      target: fixture.manifest,
      config: amd64.config,
      children: fixture.children!,
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
      umoci: { tag: 'latest', refuses: /tag is ambiguous: latest/ },
    });
  });
});
