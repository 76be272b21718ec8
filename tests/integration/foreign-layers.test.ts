// Foreign layers (Windows base layers): an image whose second layer has the Docker foreign media
// type and `urls` pointing at another loopback server (the static server), pushed by hand through
// the registry API. Pulled through the real
// proxy server: with the server under `foreignLayerHosts` the bytes come from there, verified, and
// skopeo reads and copies the archives; without it the docker/oci archives keep the descriptor with
// its urls (the pull says why), and the formats that need the bytes refuse with FOREIGN_LAYER.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { pushForeignImage, type ForeignImage } from '../helpers/foreign-image.ts';
import { digestOf } from '../helpers/registry-api.ts';

const env = inject('registryEnv');
const REPOSITORY = 'foreign/windows-like';

let dir: string;
let image: ForeignImage;
let allowed: RunningServer;
let refused: RunningServer;
let foreignDigest: string;
let foreignUrl: string;
let manifestDigest: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-foreign-'));
  image = await pushForeignImage(env.anon, env.storageDir, REPOSITORY, dir);
  ({ foreignDigest, foreignUrl, manifestDigest } = image);
  const proxy = (foreignLayerHosts: string[]) =>
    startServer(
      parseConfig({
        ...structuredClone(DEFAULT_CONFIG),
        listen: { host: '127.0.0.1', port: 0 },
        registries: [{ host: env.anon.host, scheme: 'http' }],
        foreignLayerHosts,
      }),
      { staticDir: dir },
    );
  [allowed, refused] = await Promise.all([proxy([`${image.layers.origin}/layers/`]), proxy([])]);
}, 60_000);

afterAll(async () => {
  await Promise.all([allowed?.close(), refused?.close(), image?.layers.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Pulls the image through `server` into a fresh store, with its events. */
async function pullVia(server: RunningServer, format: Format) {
  const client = new RegistryClient({
    transport: { fetch: globalThis.fetch, rewrite: proxyRewrite(server.url) },
    retry: { sleep: async () => undefined },
  });
  const store = new MemoryBlobStore();
  const events: PullEvent[] = [];
  const reference = parseReference(`${env.anon.host}/${REPOSITORY}:ltsc`);
  const { image } = await pull(new RemoteSource(client), reference, {
    store,
    uncompressed: format.needsUncompressed,
    onProgress: (e) => events.push(e),
  });
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

const skopeo = (args: string[]) =>
  runText('skopeo', ['--override-os', 'windows', '--override-arch', 'amd64', ...args], { env: { ...process.env, ...env.skopeoEnv } });

describe('foreign layers through the proxy', () => {
  it('allowed: fetched from their urls, verified, and the archives load in skopeo', async () => {
    const mark = image.layers.requests.length;
    const docker = formatById('docker')!;
    const { store, events, images } = await pullVia(allowed, docker);
    expect(await store.has(foreignDigest)).toBe(true);
    expect(events.some((e) => e.type === 'warning')).toBe(false);
    const fetched = image.layers.requests.slice(mark).filter((r) => r.url.includes(foreignDigest.slice(7)));
    expect(fetched.length).toBeGreaterThan(0);
    for (const r of fetched) expect(r.headers['authorization']).toBeUndefined();

    const dockerFile = await write(docker, store, images, 'allowed');
    // docker-archive: manifest.json with LayerSources; skopeo copies it, re-verifying every layer.
    const entries = JSON.parse(await runText('tar', ['-xOf', dockerFile, 'manifest.json'])) as {
      LayerSources?: Record<string, { urls?: string[] }>;
    }[];
    expect(Object.values(entries[0]!.LayerSources ?? {})[0]?.urls).toEqual([foreignUrl]);
    await skopeo(['copy', `docker-archive:${dockerFile}`, `oci:${join(dir, 'copied-docker')}:x`]);

    const ociFile = await write(formatById('oci')!, store, images, 'allowed');
    expect(
      digestOf(await run('skopeo', ['inspect', '--raw', `oci-archive:${ociFile}`], { env: { ...process.env, ...env.skopeoEnv } })),
    ).toBe(manifestDigest);
    await skopeo(['copy', `oci-archive:${ociFile}`, `oci:${join(dir, 'copied-oci')}:x`]);
    expect(await runText('tar', ['-tf', ociFile])).toContain(`blobs/sha256/${foreignDigest.slice(7)}`);

    // A format that needs the bytes has them.
    const tarball = formatById('tarball')!;
    await write(tarball, store, images, 'allowed');
  });

  it('not allowed: docker and oci keep the descriptor with its urls, and the pull says why', async () => {
    const mark = image.layers.requests.length;
    const { store, events, images } = await pullVia(refused, formatById('oci')!);
    expect(image.layers.requests.length).toBe(mark); // nothing reached the layer's server
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
    const entries = JSON.parse(await runText('tar', ['-xOf', dockerFile, 'manifest.json'])) as {
      LayerSources?: Record<string, { urls?: string[] }>;
    }[];
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
