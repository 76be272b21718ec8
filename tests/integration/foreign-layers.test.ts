// Foreign layers (Windows base layers): an image whose second layer has the Docker foreign media
// type and `urls` pointing at another loopback server (the static server), pushed by hand through
// the registry API. Pulled through the real
// proxy server: with the server under `foreignLayerHosts` the bytes come from there, verified, and
// skopeo reads and copies the archives; without it the docker/oci archives keep the descriptor with
// its urls (the pull says why), and the formats that need the bytes refuse with FOREIGN_LAYER.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById, type Format, type SinkImage } from '../../src/core/formats/index.ts';
import { proxyRewrite } from '../../src/core/http/transport.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import type { PullEvent } from '../../src/core/progress.ts';
import { pull } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { rejection } from '../helpers/assert.ts';
import { run, runText } from '../helpers/command.ts';
import { digestOf, pushBlob } from '../helpers/registry-api.ts';
import { startStaticServer, type StaticServer } from '../helpers/static-server.ts';

const env = inject('registryEnv');
const REPOSITORY = 'foreign/windows-like';
const FOREIGN = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
const V2S2 = 'application/vnd.docker.distribution.manifest.v2+json';

let dir: string;
let layers: StaticServer;
let allowed: RunningServer;
let refused: RunningServer;
let foreignDigest: string;
let foreignUrl: string;
let manifestDigest: string;

/**
 * Tags a hand-written manifest in the registry. distribution 2.8 refuses a manifest PUT with
 * `urls` unless its validation.manifests.urls.allow matches them (unset in the harness), so the
 * manifest goes in as a blob through the API and is tagged by writing the two link files the
 * registry's filesystem storage keeps for a manifest (registry/storage/paths.go); GETs then serve
 * it as any pushed manifest.
 */
async function storeManifest(repository: string, tag: string, manifest: string): Promise<string> {
  const digest = await pushBlob(env.anon.url, repository, new TextEncoder().encode(manifest));
  const hex = digest.slice('sha256:'.length);
  const repo = join(env.storageDir, 'docker/registry/v2/repositories', repository, '_manifests');
  for (const link of [`revisions/sha256/${hex}`, `tags/${tag}/current`, `tags/${tag}/index/sha256/${hex}`]) {
    await mkdir(join(repo, link), { recursive: true });
    await writeFile(join(repo, link, 'link'), digest);
  }
  return digest;
}

/** A reproducible tar of `files` (GNU tar), as a layer's diff. */
async function tarOf(name: string, files: Record<string, string>): Promise<Buffer> {
  const root = join(dir, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', '-', '.']);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-foreign-'));
  const baseTar = await tarOf('base', { 'Windows/System32/base.txt': 'a foreign base layer\n' });
  const appTar = await tarOf('app', { 'app/hello.txt': 'hello from the distributable layer\n' });
  const base = gzipSync(baseTar);
  const app = gzipSync(appTar);
  foreignDigest = digestOf(base);

  // The "Microsoft CDN": the foreign layer lives only here.
  const served = join(dir, 'cdn');
  await mkdir(join(served, 'layers'), { recursive: true });
  await writeFile(join(served, 'layers', `${foreignDigest.slice(7)}.tar.gz`), base);
  layers = await startStaticServer({ root: served });
  foreignUrl = `${layers.origin}/layers/${foreignDigest.slice(7)}.tar.gz`;

  const appDigest = await pushBlob(env.anon.url, REPOSITORY, app);
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: 'amd64',
    os: 'windows',
    'os.version': '10.0.17763.1',
    created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['cmd'] },
    rootfs: { type: 'layers', diff_ids: [digestOf(baseTar), digestOf(appTar)] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'base' }, { created: '2024-01-01T00:00:00Z', created_by: 'app' }],
  }));
  const configDigest = await pushBlob(env.anon.url, REPOSITORY, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: V2S2,
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.byteLength, digest: configDigest },
    layers: [
      { mediaType: FOREIGN, size: base.byteLength, digest: foreignDigest, urls: [foreignUrl] },
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: app.byteLength, digest: appDigest },
    ],
  });
  manifestDigest = await storeManifest(REPOSITORY, 'ltsc', manifest);

  const proxy = (foreignLayerHosts: string[]) => startServer(parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: env.anon.host, scheme: 'http' }],
    foreignLayerHosts,
  }), { staticDir: dir });
  [allowed, refused] = await Promise.all([proxy([`${layers.origin}/layers/`]), proxy([])]);
}, 60_000);

afterAll(async () => {
  await Promise.all([allowed?.close(), refused?.close(), layers?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Pulls the image through `server` into a fresh store, with its events. */
async function pullVia(server: RunningServer, format: Format) {
  const client = new RegistryClient({ transport: { fetch: globalThis.fetch, rewrite: proxyRewrite(server.url) }, retry: { sleep: async () => undefined } });
  const store = new MemoryBlobStore();
  const events: PullEvent[] = [];
  const reference = parseReference(`${env.anon.host}/${REPOSITORY}:ltsc`);
  const { image } = await pull(new RemoteSource(client), reference, { store, uncompressed: format.needsUncompressed, onProgress: (e) => events.push(e) });
  return { store, events, images: [{ image, reference }] as SinkImage[] };
}

async function write(format: Format, store: MemoryBlobStore, images: SinkImage[], label: string): Promise<string> {
  const plan = await format.plan(images, { size: async (k) => (await store.size(k))! });
  const bytes = new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer());
  expect(bytes.byteLength).toBe(plan.size);
  const file = join(dir, `${label}.${format.id}.tar`);
  await writeFile(file, bytes);
  return file;
}

const skopeo = (args: string[]) => runText('skopeo', ['--override-os', 'windows', '--override-arch', 'amd64', ...args], { env: { ...process.env, ...env.skopeoEnv } });

describe('foreign layers through the proxy', () => {
  it('allowed: fetched from their urls, verified, and the archives load in skopeo', async () => {
    const mark = layers.requests.length;
    const docker = formatById('docker')!;
    const { store, events, images } = await pullVia(allowed, docker);
    expect(await store.has(foreignDigest)).toBe(true);
    expect(events.some((e) => e.type === 'warning')).toBe(false);
    const fetched = layers.requests.slice(mark).filter((r) => r.url.includes(foreignDigest.slice(7)));
    expect(fetched.length).toBeGreaterThan(0);
    for (const r of fetched) expect(r.headers['authorization']).toBeUndefined();

    const dockerFile = await write(docker, store, images, 'allowed');
    // docker-archive: manifest.json with LayerSources; skopeo copies it, re-verifying every layer.
    const entries = JSON.parse(await runText('tar', ['-xOf', dockerFile, 'manifest.json'])) as { LayerSources?: Record<string, { urls?: string[] }> }[];
    expect(Object.values(entries[0]!.LayerSources ?? {})[0]?.urls).toEqual([foreignUrl]);
    await skopeo(['copy', `docker-archive:${dockerFile}`, `oci:${join(dir, 'copied-docker')}:x`]);

    const ociFile = await write(formatById('oci')!, store, images, 'allowed');
    expect(digestOf(await run('skopeo', ['inspect', '--raw', `oci-archive:${ociFile}`], { env: { ...process.env, ...env.skopeoEnv } }))).toBe(manifestDigest);
    await skopeo(['copy', `oci-archive:${ociFile}`, `oci:${join(dir, 'copied-oci')}:x`]);
    expect(await runText('tar', ['-tf', ociFile])).toContain(`blobs/sha256/${foreignDigest.slice(7)}`);

    // A format that needs the bytes has them.
    const tarball = formatById('tarball')!;
    await write(tarball, store, images, 'allowed');
  });

  it('not allowed: docker and oci keep the descriptor with its urls, and the pull says why', async () => {
    const mark = layers.requests.length;
    const { store, events, images } = await pullVia(refused, formatById('oci')!);
    expect(layers.requests.length).toBe(mark); // nothing reached the layer's server
    expect(await store.has(foreignDigest)).toBe(false);
    const warning = events.find((e): e is Extract<PullEvent, { type: 'warning' }> => e.type === 'warning');
    expect(warning?.code).toBe('FOREIGN_LAYER');
    expect(warning?.message).toContain(new URL(foreignUrl).host);
    expect(warning?.hint).toContain('foreignLayerHosts');
    expect(events.some((e) => e.type === 'layer' && e.state === 'skipped' && e.digest === foreignDigest)).toBe(true);

    const ociFile = await write(formatById('oci')!, store, images, 'refused');
    const listing = await runText('tar', ['-tf', ociFile]);
    expect(listing).not.toContain(foreignDigest.slice(7));
    const raw = await run('skopeo', ['inspect', '--raw', `oci-archive:${ociFile}`], { env: { ...process.env, ...env.skopeoEnv } });
    expect(digestOf(raw)).toBe(manifestDigest);
    expect((JSON.parse(raw.toString()) as { layers: { urls?: string[] }[] }).layers[0]!.urls).toEqual([foreignUrl]);

    const dockerFile = await write(formatById('docker')!, store, images, 'refused');
    const entries = JSON.parse(await runText('tar', ['-xOf', dockerFile, 'manifest.json'])) as { LayerSources?: Record<string, { urls?: string[] }> }[];
    expect(Object.values(entries[0]!.LayerSources ?? {})[0]?.urls).toEqual([foreignUrl]);
  });

  it('not allowed, a format that needs the bytes: FOREIGN_LAYER naming the config key', async () => {
    for (const id of ['tarball', 'legacy']) {
      const format = formatById(id)!;
      const { store, images } = await pullVia(refused, format);
      const error = await rejection(format.plan(images, { size: async (k) => (await store.size(k))! }));
      expect(error.code).toBe('FOREIGN_LAYER');
      expect(error.message).toContain(new URL(foreignUrl).host);
      expect(error.hint).toContain('foreignLayerHosts');
    }
  });
});
