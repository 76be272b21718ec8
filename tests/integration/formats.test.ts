// Every output format × every kind of image, judged by independent readers: skopeo (docker-archive:
// and oci-archive:), umoci (the OCI layouts), GNU tar and node:crypto, against the registry's truth.
// podman load has its own file (formats-podman.test.ts); several images in one archive, pulls by
// digest, all platforms and determinism are in formats-multi.test.ts.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formats, formatById, type Format, type SinkImage } from '../../src/core/formats/index.ts';
import { runText } from '../helpers/command.ts';
import { fixtureRef } from '../helpers/harness.ts';
import { MANY_LAYERS, type FixtureName, type FixtureTruth } from '../helpers/fixtures.ts';
import { validateDockerArchiveLayers, validateOciArchive, type OciArchiveCheck } from '../helpers/validate-oci.ts';

const env = inject('registryEnv');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-formats-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const source = new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } }));
// One store per need: formats that keep layers compressed are proven on a store without uncompressed copies.
const stores = { compressed: new MemoryBlobStore(), uncompressed: new MemoryBlobStore() };
const pulls = new Map<string, Promise<SinkImage>>();

function pulled(fixture: FixtureName, format: Format): Promise<SinkImage> {
  const kind = format.needsUncompressed ? 'uncompressed' : 'compressed';
  const key = `${fixture} ${kind}`;
  let p = pulls.get(key);
  if (!p) {
    const reference = parseReference(fixtureRef(env, env.anon, fixture));
    p = pull(source, reference, { store: stores[kind], uncompressed: format.needsUncompressed }).then(({ image }) => ({
      image,
      reference,
    }));
    pulls.set(key, p);
  }
  return p;
}

async function write(format: Format, images: SinkImage[], label: string): Promise<string> {
  const store = format.needsUncompressed ? stores.uncompressed : stores.compressed;
  const plan = await format.plan(images, { size: async (k) => (await store.size(k))! });
  const bytes = new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer());
  expect(bytes.byteLength).toBe(plan.size);
  const file = join(dir, `${label}.${format.id}.tar`);
  await writeFile(file, bytes);
  return file;
}

/** The image a single-platform pull gets: the fixture, or its linux/amd64 child. */
function truthOf(fixture: FixtureName): { manifest: FixtureTruth['manifest']; config: FixtureTruth['config'] } {
  const f = env.fixtures[fixture];
  const amd64 = f.children?.find((c) => c.platform.architecture === 'amd64');
  return amd64 ? { manifest: amd64.manifest, config: amd64.config } : { manifest: f.manifest, config: f.config };
}

/** What umoci 0.4.7 does with each fixture: unpack (these files there, these gone), or refuse for its own reasons. */
const UMOCI: Record<string, OciArchiveCheck['umoci']> = {
  v2s2: { tag: 'latest', refuses: /not implemented: application\/vnd\.docker\.distribution\.manifest\.v2\+json/ },
  list: { tag: 'latest', refuses: /not implemented: application\/vnd\.docker\.distribution\.manifest\.v2\+json/ },
  zstd: { tag: 'latest', refuses: /not correct mediatype: application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd/ },
  oci: { tag: 'latest', files: ['etc/longshore-arch', 'bin/tool', 'app/version.txt'] },
  multi: { tag: 'latest', files: ['etc/longshore-arch', 'usr/bin/tool'] },
  plain: { tag: 'latest', files: ['data/none-1.txt', 'data/random.bin'] },
  many: { tag: 'latest', files: ['layers/01.txt', `layers/${MANY_LAYERS - 1}.txt`], absent: ['layers/00.txt'] },
};

const FIXTURES: FixtureName[] = ['v2s2', 'oci', 'multi', 'list', 'many', 'plain', 'zstd'];

describe('formats: the list the UI reads', () => {
  it('is docker (default), legacy, oci, tarball, each described with its capabilities', () => {
    expect(formats.map((f) => f.id)).toEqual(['docker', 'legacy', 'oci', 'tarball']);
    for (const f of formats) {
      expect(f.label).toBeTruthy();
      expect(f.description).not.toContain('\n');
      expect(formatById(f.id)).toBe(f);
    }
    expect(formats.map((f) => [f.id, f.needsUncompressed, f.multiImage, f.allPlatforms])).toEqual([
      ['docker', false, true, false],
      ['legacy', true, true, false],
      ['oci', false, false, true],
      ['tarball', false, true, false],
    ]);
  });
});

describe.concurrent.each(FIXTURES)('fixture %s', (fixture) => {
  const name = () => fixtureRef(env, env.anon, fixture);
  const annotations = () => ({ 'io.containerd.image.name': name(), 'org.opencontainers.image.ref.name': 'latest' });

  it('docker: an OCI layout (skopeo oci-archive:, umoci) and a docker-archive (skopeo docker-archive:), blobs byte-exact', async () => {
    const format = formatById('docker')!;
    const file = await write(format, [await pulled(fixture, format)], fixture);
    const truth = truthOf(fixture);
    await validateOciArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      target: truth.manifest,
      config: truth.config,
      annotations: annotations(),
      umoci: UMOCI[fixture]!,
    });
    const [entry] = await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [{ ...truth, repoTags: [name()] }],
      layers: 'compressed',
    });
    expect(entry!.Config).toBe(`blobs/sha256/${truth.config.digest.slice(7)}`);
    expect(entry!.Layers.every((l) => l.startsWith('blobs/sha256/'))).toBe(true);
    const names = (await runText('tar', ['-tf', file])).trim().split('\n');
    expect(names).toEqual([...names].sort());
    expect(names.filter((n) => !n.startsWith('blobs/'))).toEqual(['index.json', 'manifest.json', 'oci-layout', 'repositories']);
  });

  it('oci: an OCI layout (skopeo oci-archive:, umoci), blobs byte-exact', async () => {
    const format = formatById('oci')!;
    const file = await write(format, [await pulled(fixture, format)], fixture);
    const truth = truthOf(fixture);
    await validateOciArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      target: truth.manifest,
      config: truth.config,
      annotations: annotations(),
      umoci: UMOCI[fixture]!,
    });
    const names = (await runText('tar', ['-tf', file])).trim().split('\n');
    expect(names.filter((n) => !n.startsWith('blobs/'))).toEqual(['index.json', 'oci-layout']);
  });

  it('tarball: crane layout (sha256:<hex> config, <hex>.tar.gz|.tar.zst|.tar layers), skopeo docker-archive:', async () => {
    const format = formatById('tarball')!;
    const file = await write(format, [await pulled(fixture, format)], fixture);
    const truth = truthOf(fixture);
    const [entry] = await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [{ ...truth, repoTags: [name()] }],
      layers: 'compressed',
    });
    expect(entry!.Config).toBe(truth.config.digest);
    const layers = (JSON.parse(truth.manifest.raw) as { layers: { digest: string; mediaType: string }[] }).layers;
    const ext = (mt: string) => (mt.endsWith('zstd') ? '.tar.zst' : /gzip$/.test(mt) ? '.tar.gz' : '.tar');
    expect(entry!.Layers).toEqual(layers.map((l) => `${l.digest.slice(7)}${ext(l.mediaType)}`));
    const names = (await runText('tar', ['-tf', file])).trim().split('\n');
    expect(names).toEqual([truth.config.digest, ...new Set(entry!.Layers), 'manifest.json']);
  });

  it('legacy: uncompressed layer.tar per layer (zstd decompressed by fzstd), skopeo docker-archive:', async () => {
    const format = formatById('legacy')!;
    const file = await write(format, [await pulled(fixture, format)], fixture);
    const truth = truthOf(fixture);
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [{ ...truth, repoTags: [name()] }],
      layers: 'uncompressed',
    });
  });
});

describe('fixture many', () => {
  it(`has ${MANY_LAYERS} layers`, () => {
    expect((JSON.parse(env.fixtures.many.manifest.raw) as { layers: unknown[] }).layers).toHaveLength(MANY_LAYERS);
  });
});
