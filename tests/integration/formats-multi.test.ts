// Beyond one image per archive: several images in one tar (crane pull IMAGE… TARBALL) with shared
// blobs written once, every platform of an index (pullIndex + the oci format), pulls by digest,
// and determinism (two pulls → the same bytes) for every format. Judged by skopeo, umoci, GNU tar.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { parsePlatform } from '../../src/core/image/platform.ts';
import { pull, pullIndex } from '../../src/core/pull.ts';
import type { PullEvent } from '../../src/core/progress.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById, formats, type Format, type SinkImage } from '../../src/core/formats/index.ts';
import { runText } from '../helpers/command.ts';
import { fixtureRef } from '../helpers/harness.ts';
import { validateDockerArchiveLayers, validateOciArchive } from '../helpers/validate-oci.ts';

const env = inject('registryEnv');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-formats-multi-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const newSource = () => new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } }));
const source = newSource();
const store = new MemoryBlobStore();
const pulls = new Map<string, Promise<SinkImage>>();

function pulled(name: string): Promise<SinkImage> {
  let p = pulls.get(name);
  if (!p) {
    const reference = parseReference(name);
    p = pull(source, reference, { store, uncompressed: true }).then(({ image }) => ({ image, reference }));
    pulls.set(name, p);
  }
  return p;
}

let serial = 0;
async function write(format: Format, images: SinkImage[], from: MemoryBlobStore = store): Promise<{ file: string; bytes: Buffer }> {
  const plan = await format.plan(images, { size: async (k) => (await from.size(k))! });
  const bytes = Buffer.from(await new Response(assembleStream(plan, from)).arrayBuffer());
  expect(bytes.length).toBe(plan.size);
  const file = join(dir, `${serial++}.${format.id}.tar`);
  await writeFile(file, bytes);
  return { file, bytes };
}

const names = async (file: string) => (await runText('tar', ['-tf', file])).trim().split('\n');

describe.concurrent('several images in one archive', () => {
  const latest = () => fixtureRef(env, env.anon, 'oci');
  const v1 = () => fixtureRef(env, env.anon, 'ociV1');
  const images = () => [
    { manifest: env.fixtures.oci.manifest, config: env.fixtures.oci.config, repoTags: [latest()] },
    { manifest: env.fixtures.ociV1.manifest, config: env.fixtures.ociV1.config, repoTags: [v1()] },
  ];
  const baseLayer = () => (JSON.parse(env.fixtures.oci.manifest.raw) as { layers: { digest: string }[] }).layers[0]!.digest;

  it('the fixtures share a base layer and differ above it', () => {
    const v1Layers = (JSON.parse(env.fixtures.ociV1.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
    expect(v1Layers[0]).toBe(baseLayer());
    expect(env.fixtures.ociV1.config.digest).not.toBe(env.fixtures.oci.config.digest);
  });

  it('docker: both in manifest.json and index.json, the shared base layer once', async () => {
    const { file } = await write(formatById('docker')!, [await pulled(latest()), await pulled(v1())]);
    const list = await names(file);
    expect(list.filter((n) => n === `blobs/sha256/${baseLayer().slice(7)}`)).toHaveLength(1);
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: images(),
      layers: 'compressed',
    });
    for (const [fixture, tag] of [
      ['oci', 'latest'],
      ['ociV1', 'v1'],
    ] as const) {
      const f = env.fixtures[fixture];
      await validateOciArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        target: f.manifest,
        config: f.config,
        entries: 2,
        annotations: { 'io.containerd.image.name': fixtureRef(env, env.anon, fixture), 'org.opencontainers.image.ref.name': tag },
        umoci: { tag, files: ['bin/tool', 'app/version.txt'] },
      });
    }
  });

  it('tarball: both in manifest.json, the shared base layer once', async () => {
    const { file } = await write(formatById('tarball')!, [await pulled(latest()), await pulled(v1())]);
    const list = await names(file);
    expect(list.filter((n) => n === `${baseLayer().slice(7)}.tar.gz`)).toHaveLength(1);
    expect(list.at(-1)).toBe('manifest.json');
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: images(),
      layers: 'compressed',
    });
  });

  it('legacy: both in manifest.json and repositories, the shared base layer once', async () => {
    const { file } = await write(formatById('legacy')!, [await pulled(latest()), await pulled(v1())]);
    const entries = await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: images(),
      layers: 'uncompressed',
    });
    expect(entries[0]!.Layers[0]).toBe(entries[1]!.Layers[0]);
    const list = await names(file);
    expect(list.filter((n) => n === entries[0]!.Layers[0])).toHaveLength(1);
    const repositories = JSON.parse(await runText('tar', ['-xOf', file, 'repositories'])) as Record<string, Record<string, string>>;
    expect(Object.keys(repositories[`${env.anon.host}/test/oci`]!).sort()).toEqual(['latest', 'v1']);
  });

  it('oci holds one image: asking for two is a clear INVALID_ARGUMENT, before anything is written', async () => {
    const oci = formatById('oci')!;
    expect(oci.multiImage).toBe(false);
    const err = await oci
      .plan([await pulled(latest()), await pulled(v1())], { size: async (k) => (await store.size(k))! })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LongshoreError);
    expect(err).toMatchObject({ code: ErrorCode.InvalidArgument, data: { format: 'oci', count: 2 } });
    expect((err as LongshoreError).message).toBe('The oci format holds one image; 2 were given.');
    expect((err as LongshoreError).hint).toMatch(/docker, legacy, tarball/);
  });
});

describe.concurrent('every platform of an index (pullIndex + oci)', () => {
  it.each(['multi', 'list'] as const)('%s: the registry index byte-exact, every child (attestation too) below it', async (fixture) => {
    const name = fixtureRef(env, env.anon, fixture);
    const reference = parseReference(name);
    const events: PullEvent[] = [];
    const all = await pullIndex(source, reference, { store, onProgress: (e) => events.push(e) });
    const f = env.fixtures[fixture];
    expect(all.index!.index.digest).toBe(f.manifest.digest);
    expect(all.index!.children.map((c) => c.digest)).toEqual(f.children!.map((c) => c.manifest.digest));
    const amd64 = f.children!.find((c) => c.platform.architecture === 'amd64')!;
    expect(all.image.digest).toBe(amd64.manifest.digest);
    // One plan over every distinct layer of every child.
    const plans = events.filter((e) => e.type === 'plan');
    expect(plans).toHaveLength(1);
    const layerDigests = new Set(
      f.children!.flatMap((c) => (JSON.parse(c.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest)),
    );
    expect(plans[0]!.type === 'plan' && plans[0]!.layers.map((l) => l.digest).sort()).toEqual([...layerDigests].sort());

    const { file } = await write(formatById('oci')!, [{ ...all, reference }]);
    const umoci =
      fixture === 'list'
        ? { tag: 'latest', refuses: /not implemented: application\/vnd\.docker\.distribution\.manifest\.list\.v2\+json/ }
        : { tag: 'latest', refuses: /tag is ambiguous: latest/ };
    const { blobs } = await validateOciArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      target: f.manifest,
      config: amd64.config,
      children: f.children!,
      annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
      umoci,
    });
    // index + per child: manifest, config, layers (shared ones once).
    const configs = new Set(f.children!.map((c) => c.config.digest));
    expect(blobs).toHaveLength(1 + f.children!.length + configs.size + layerDigests.size);
  });

  it('the other formats write the chosen platform only, from the same pull', async () => {
    const name = fixtureRef(env, env.anon, 'multi');
    const reference = parseReference(name);
    const all = await pullIndex(source, reference, { store, platform: parsePlatform('linux/arm64') });
    const arm64 = env.fixtures.multi.children!.find((c) => c.platform.architecture === 'arm64')!;
    expect(all.image.digest).toBe(arm64.manifest.digest);
    const { file } = await write(formatById('docker')!, [{ ...all, reference }]);
    const index = JSON.parse(await runText('tar', ['-xOf', file, 'index.json'])) as { manifests: { digest: string; platform?: unknown }[] };
    expect(index.manifests.map((m) => m.digest)).toEqual([arm64.manifest.digest]);
    expect(index.manifests[0]!.platform).toEqual(arm64.platform);
  });

  it('a name that points at one image gives that image and no index', async () => {
    const reference = parseReference(fixtureRef(env, env.anon, 'oci'));
    const one = await pullIndex(source, reference, { store });
    expect(one.index).toBeUndefined();
    expect(one.image.digest).toBe(env.fixtures.oci.manifest.digest);
  });
});

describe.concurrent('pulled by digest', () => {
  it.each(['docker', 'oci'] as const)('%s: ref.name and the name carry digest-<hex>; skopeo selects the image by it', async (id) => {
    const digest = env.fixtures.oci.manifest.digest;
    const repo = `${env.anon.host}/${env.fixtures.oci.repository}`;
    const { file } = await write(formatById(id)!, [await pulled(`${repo}@${digest}`)]);
    const tag = `digest-${digest.slice(7)}`;
    await validateOciArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      target: env.fixtures.oci.manifest,
      config: env.fixtures.oci.config,
      annotations: { 'io.containerd.image.name': `${repo}:${tag}`, 'org.opencontainers.image.ref.name': tag },
      umoci: { tag, files: ['bin/tool'] },
    });
    const raw = await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}:${tag}`], { env: env.skopeoEnv });
    expect(raw).toBe(env.fixtures.oci.manifest.raw);
  });

  it.each(['docker', 'legacy', 'tarball'] as const)('%s: RepoTags is [<repository>:digest-<hex>]', async (id) => {
    const digest = env.fixtures.oci.manifest.digest;
    const repo = `${env.anon.host}/${env.fixtures.oci.repository}`;
    const { file } = await write(formatById(id)!, [await pulled(`${repo}@${digest}`)]);
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      layers: id === 'legacy' ? 'uncompressed' : 'compressed',
      images: [{ manifest: env.fixtures.oci.manifest, config: env.fixtures.oci.config, repoTags: [`${repo}:digest-${digest.slice(7)}`] }],
    });
  });
});

describe.concurrent('determinism: two pulls into fresh stores give the same bytes', () => {
  async function twice(format: Format, name: string, all = false): Promise<[Buffer, Buffer]> {
    const once = async () => {
      const fresh = new MemoryBlobStore();
      const reference = parseReference(name);
      const sink: SinkImage = all
        ? { ...(await pullIndex(newSource(), reference, { store: fresh })), reference }
        : { image: (await pull(newSource(), reference, { store: fresh, uncompressed: format.needsUncompressed })).image, reference };
      return (await write(format, [sink], fresh)).bytes;
    };
    return [await once(), await once()];
  }

  it.each(formats.map((f) => f.id))('%s', async (id) => {
    for (const fixture of ['v2s2', 'zstd'] as const) {
      const [a, b] = await twice(formatById(id)!, fixtureRef(env, env.anon, fixture));
      expect(a.equals(b)).toBe(true);
    }
  });

  it('oci with all platforms', async () => {
    const [a, b] = await twice(formatById('oci')!, fixtureRef(env, env.anon, 'multi'), true);
    expect(a.equals(b)).toBe(true);
    expect(a.length).toBeGreaterThan(0);
  });

  it('files are root-owned, dated 1970-01-01, mode 0644 (dirs 0755), in every format', async () => {
    for (const f of formats) {
      const { file } = await write(f, [await pulled(fixtureRef(env, env.anon, 'v2s2'))]);
      for (const line of (await runText('tar', ['--utc', '-tvf', file])).trim().split('\n')) {
        expect(line).toMatch(/^(-rw-r--r--|drwxr-xr-x) 0\/0 .* 1970-01-01 00:00 /);
      }
    }
  });
});
