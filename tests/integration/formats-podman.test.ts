// `podman load` (Debian podman 4.3, vfs storage in a temp dir per load) takes every format: the
// loaded image's ID is the config digest, its name the one pulled (not "localhost/latest:latest"),
// and where the archive has an index.json (docker, oci) podman keeps the registry's manifest digest.
// podman tries an archive as oci-archive first, then docker-archive: the docker format loads
// through its index.json when it holds one image, through manifest.json when it holds several.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull, pullIndex } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById, type Format, type SinkImage } from '../../src/core/formats/index.ts';
import { fixtureRef } from '../helpers/harness.ts';
import type { FixtureName } from '../helpers/fixtures.ts';
import { podmanLoad } from '../helpers/validate-oci.ts';

const env = inject('registryEnv');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-podman-formats-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const source = new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } }));
// Every pull keeps uncompressed copies too, so one store serves all four formats.
const store = new MemoryBlobStore();
const pulls = new Map<string, Promise<SinkImage>>();

function pulled(name: string, all = false): Promise<SinkImage> {
  const key = `${name} ${all}`;
  let p = pulls.get(key);
  if (!p) {
    const reference = parseReference(name);
    p = all
      ? pullIndex(source, reference, { store }).then((r) => ({ ...r, reference }))
      : pull(source, reference, { store, uncompressed: true }).then(({ image }) => ({ image, reference }));
    pulls.set(key, p);
  }
  return p;
}

let serial = 0;
async function write(format: Format, images: SinkImage[]): Promise<string> {
  const plan = await format.plan(images, { size: async (k) => (await store.size(k))! });
  const file = join(dir, `${serial++}.${format.id}.tar`);
  await writeFile(file, new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer()));
  return file;
}

function truthOf(fixture: FixtureName) {
  const f = env.fixtures[fixture];
  return f.children?.find((c) => c.platform.architecture === 'amd64') ?? f;
}

const FORMATS = ['docker', 'legacy', 'oci', 'tarball'] as const;
const FIXTURES: FixtureName[] = ['v2s2', 'oci', 'multi', 'many', 'plain', 'zstd'];
/** Formats whose archive has an index.json podman loads from, keeping the manifest digest. */
const KEEPS_DIGEST = new Set(['docker', 'oci']);

describe.concurrent('podman load', () => {
  for (const id of FORMATS) {
    it.each(FIXTURES)(`${id} × %s: ID is the config digest, name is the one pulled`, async (fixture) => {
      const name = fixtureRef(env, env.anon, fixture);
      const file = await write(formatById(id)!, [await pulled(name)]);
      const { images, output } = await podmanLoad(file);
      const truth = truthOf(fixture);
      expect(output).toContain(`Loaded image: ${name}`);
      expect(images).toHaveLength(1);
      expect(images[0]!.Id).toBe(truth.config.digest.slice(7));
      expect(images[0]!.Names).toEqual([name]);
      if (KEEPS_DIGEST.has(id)) expect(images[0]!.Digest).toBe(truth.manifest.digest);
    });
  }

  it('oci with all platforms: podman takes the amd64 child under the index name and digest', async () => {
    const name = fixtureRef(env, env.anon, 'multi');
    const file = await write(formatById('oci')!, [await pulled(name, true)]);
    const { images } = await podmanLoad(file);
    expect(images).toHaveLength(1);
    expect(images[0]!.Id).toBe(truthOf('multi').config.digest.slice(7));
    expect(images[0]!.Names).toEqual([name]);
    expect(images[0]!.Digest).toBe(env.fixtures.multi.manifest.digest);
  });

  it.each(['docker', 'legacy', 'tarball'] as const)('%s with two images: both load, each under its name', async (id) => {
    const latest = fixtureRef(env, env.anon, 'oci');
    const v1 = fixtureRef(env, env.anon, 'ociV1');
    const file = await write(formatById(id)!, [await pulled(latest), await pulled(v1)]);
    const { images } = await podmanLoad(file);
    const byId = Object.fromEntries(images.map((i) => [i.Id, i.Names]));
    expect(byId).toEqual({
      [env.fixtures.oci.config.digest.slice(7)]: [latest],
      [env.fixtures.ociV1.config.digest.slice(7)]: [v1],
    });
  });

  it.each(FORMATS)('%s pulled by digest: named <repository>:digest-<hex>', async (id) => {
    const digest = env.fixtures.oci.manifest.digest;
    const name = `${env.anon.host}/${env.fixtures.oci.repository}@${digest}`;
    const file = await write(formatById(id)!, [await pulled(name)]);
    const { images } = await podmanLoad(file);
    expect(images).toHaveLength(1);
    expect(images[0]!.Id).toBe(env.fixtures.oci.config.digest.slice(7));
    expect(images[0]!.Names).toEqual([`${env.anon.host}/${env.fixtures.oci.repository}:digest-${digest.slice(7)}`]);
  });
});
