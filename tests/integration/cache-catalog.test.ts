// The catalog behind the storage panel, against a real registry: two images sharing a base layer
// (test/oci:latest and :v1), the second pull fetching only what it lacks (seen at a relay), the
// shared blob listed once, deleting one image keeps what the other uses, LRU eviction under a
// budget spares the pull in progress, and clear empties everything.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { CachedSource } from '../../src/core/image/cached-source.ts';
import { pull } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { ImageCatalog, recordAndEvict, type ListableStore } from '../../src/browser/image-catalog.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { mapKV } from '../helpers/catalog-kv.ts';

const env = inject('registryEnv');
let relay: TamperProxy;
beforeAll(async () => {
  relay = await startTamperProxy(env.anon.url);
});
afterAll(async () => {
  await relay?.close();
});

function listable(store: MemoryBlobStore): ListableStore & MemoryBlobStore {
  return Object.assign(store, {
    list: async () => Promise.all(store.keys().map(async (key) => ({ key, size: (await store.size(key))! }))),
  });
}

describe('the image catalog', () => {
  it('records two images sharing a base layer, deletes one keeping the shared blob, evicts LRU, clears', async () => {
    let clock = 1_000;
    const catalog = new ImageCatalog(mapKV(), () => clock);
    const store = listable(new MemoryBlobStore());
    const remote = () => new CachedSource(new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } })), catalog);
    const pullOne = async (path: string) => {
      const name = `${relay.host}/${path}`;
      const source = remote();
      const seen = relay.requests.length;
      const { image } = await pull(source, parseReference(name), { store });
      clock += 1_000;
      await recordAndEvict(catalog, source.seen, [{ typed: name, image }], store);
      const blobs = relay.requests
        .slice(seen)
        .filter((r) => r.method === 'GET' && r.path.includes('/blobs/'))
        .map((r) => r.path.split('/').pop()!);
      return { image, fetchedLayers: blobs.filter((d) => d !== image.manifest.config.digest) };
    };
    const latest = await pullOne(env.fixtures.oci.path);
    const v1 = await pullOne(env.fixtures.ociV1.path);
    const base = latest.image.layers[0]!.descriptor.digest;
    expect(v1.image.layers[0]!.descriptor.digest).toBe(base);
    // Only the layer it lacked was fetched for the second image.
    expect(latest.fetchedLayers.sort()).toEqual(latest.image.layers.map((l) => l.descriptor.digest).sort());
    expect(v1.fetchedLayers).toEqual(v1.image.layers.slice(1).map((l) => l.descriptor.digest));

    const view = await catalog.view(store);
    expect(view.images.map((i) => [i.name, i.digest, i.platform, i.offline])).toEqual([
      [`${relay.host}/${env.fixtures.ociV1.path}`, v1.image.digest, 'linux/amd64', 'all'],
      [`${relay.host}/${env.fixtures.oci.path}`, latest.image.digest, 'linux/amd64', 'all'],
    ]);
    expect(view.shared.map((s) => [s.key, s.users.sort()])).toEqual([[base, [latest.image.digest, v1.image.digest].sort()]]);
    expect(view.images[0]!.size).toBe(v1.image.layers.reduce((n, l) => n + l.descriptor.size, 0));

    // Delete v1: its own layer goes, the shared base stays (latest uses it).
    const deleted = await catalog.deleteImage(v1.image.digest, store);
    expect(deleted).toEqual(v1.image.layers.slice(1).map((l) => l.descriptor.digest));
    expect(await store.has(base)).toBe(true);
    expect((await catalog.images()).map((r) => r.digest)).toEqual([latest.image.digest]);
    expect(await catalog.manifest(v1.image.digest)).toBeUndefined();
    expect(await catalog.tag(`${relay.host}/test/oci:v1`)).toBeUndefined();

    // A budget below what both need: pulling v1 again evicts latest (least recently used), never v1's own blobs.
    await catalog.setBudget(v1.image.layers.reduce((n, l) => n + l.descriptor.size, 0));
    await pullOne(env.fixtures.ociV1.path);
    expect((await catalog.images()).map((r) => r.digest)).toEqual([v1.image.digest]);
    expect(store.keys().sort()).toEqual(v1.image.layers.map((l) => l.descriptor.digest).sort());

    await catalog.clear(store);
    expect(store.keys()).toEqual([]);
    expect(await catalog.images()).toEqual([]);
  });
});
