// Trust, at the core level against a real registry: a stored layer damaged after it was kept is
// found when the next pull reads it for an archive, dropped, fetched again (seen at a relay in front
// of the registry) and the archive skopeo reads holds the registry's bytes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { verifiedStore } from '../../src/core/store/verified-read.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById } from '../../src/core/formats/index.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { validateDockerArchiveLayers } from '../helpers/validate-oci.ts';

const env = inject('registryEnv');
let dir: string;
let relay: TamperProxy;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-trust-'));
  relay = await startTamperProxy(env.anon.url);
});
afterAll(async () => {
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a damaged stored blob', () => {
  it('is dropped when read for the next archive, fetched again, and never written into it', async () => {
    const name = `${relay.host}/${env.fixtures.oci.path}`;
    const ref = parseReference(name);
    const source = new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } }));
    const store = new MemoryBlobStore();
    const { image } = await pull(source, ref, { store });
    const victim = image.layers[0]!.descriptor.digest;
    const bytes = new Uint8Array(await new Response((await store.open(victim))!).arrayBuffer());
    bytes[bytes.length >> 1]! ^= 0xff;
    await store.put(victim, new Response(bytes).body!);

    const seen = relay.requests.length;
    const dropped: string[] = [];
    const again = await pull(source, ref, { store: verifiedStore(store, { onDropped: (k) => dropped.push(k) }) });
    expect(dropped).toEqual([victim]);
    const fetched = relay.requests
      .slice(seen)
      .filter((r) => r.method === 'GET' && r.path.includes('/blobs/'))
      .map((r) => r.path.split('/').pop())
      .filter((d) => d !== image.manifest.config.digest);
    expect(fetched).toEqual([victim]);

    const docker = formatById('docker')!;
    const plan = await docker.plan([{ image: again.image, reference: ref }], { size: async (k) => (await store.size(k))! });
    const file = join(dir, 'trust.tar');
    await writeFile(file, new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer()));
    const truth = env.fixtures.oci;
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [{ manifest: truth.manifest, config: truth.config, repoTags: [name] }],
      layers: 'compressed',
    });
  });
});
