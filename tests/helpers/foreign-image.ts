// A Windows-like image for foreign-layer tests: its base layer has Docker's foreign media type and
// `urls` pointing at a loopback static server of its own (the "Microsoft CDN"), the registry holds
// only the manifest, the config and the second (ordinary) layer.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { run } from './command.ts';
import { digestOf, pushBlob } from './registry-api.ts';
import { startStaticServer, type StaticServer } from './static-server.ts';

export const FOREIGN_LAYER = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
const V2S2 = 'application/vnd.docker.distribution.manifest.v2+json';

export interface ForeignImage {
  /** `repository:tag` on the registry it was pushed to. */
  path: string;
  manifestDigest: string;
  foreignDigest: string;
  foreignUrl: string;
  /** Serves the foreign layer (and logs every request). */
  layers: StaticServer;
}

/** A reproducible tar of `files` (GNU tar), as a layer's diff. */
async function tarOf(root: string, files: Record<string, string>): Promise<Buffer> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', root, '-cf', '-', '.']);
}

/**
 * Tags a hand-written manifest in the registry. distribution 2.8 refuses a manifest PUT with
 * `urls` unless its validation.manifests.urls.allow matches them (unset in the harness), so the
 * manifest goes in as a blob through the API and is tagged by writing the link files the
 * registry's filesystem storage keeps for a manifest (registry/storage/paths.go); GETs then serve
 * it as any pushed manifest.
 */
async function storeManifest(registryUrl: string, storageDir: string, repository: string, tag: string, manifest: string): Promise<string> {
  const digest = await pushBlob(registryUrl, repository, new TextEncoder().encode(manifest));
  const hex = digest.slice('sha256:'.length);
  const repo = join(storageDir, 'docker/registry/v2/repositories', repository, '_manifests');
  for (const link of [`revisions/sha256/${hex}`, `tags/${tag}/current`, `tags/${tag}/index/sha256/${hex}`]) {
    await mkdir(join(repo, link), { recursive: true });
    await writeFile(join(repo, link, 'link'), digest);
  }
  return digest;
}

/** Builds the image in `workDir` and pushes it as `repository:ltsc`; close `layers` when done. */
export async function pushForeignImage(
  registry: { url: string },
  storageDir: string,
  repository: string,
  workDir: string,
): Promise<ForeignImage> {
  const baseTar = await tarOf(join(workDir, 'base'), { 'Windows/System32/base.txt': `a foreign base layer of ${repository}\n` });
  const appTar = await tarOf(join(workDir, 'app'), { 'app/hello.txt': 'hello from the distributable layer\n' });
  const base = gzipSync(baseTar);
  const app = gzipSync(appTar);
  const foreignDigest = digestOf(base);

  const served = join(workDir, 'cdn');
  await mkdir(join(served, 'layers'), { recursive: true });
  await writeFile(join(served, 'layers', `${foreignDigest.slice(7)}.tar.gz`), base);
  const layers = await startStaticServer({ root: served });
  const foreignUrl = `${layers.origin}/layers/${foreignDigest.slice(7)}.tar.gz`;

  const appDigest = await pushBlob(registry.url, repository, app);
  const config = new TextEncoder().encode(
    JSON.stringify({
      architecture: 'amd64',
      os: 'windows',
      'os.version': '10.0.17763.1',
      created: '2024-01-01T00:00:00Z',
      config: { Cmd: ['cmd'] },
      rootfs: { type: 'layers', diff_ids: [digestOf(baseTar), digestOf(appTar)] },
      history: [
        { created: '2024-01-01T00:00:00Z', created_by: 'base' },
        { created: '2024-01-01T00:00:00Z', created_by: 'app' },
      ],
    }),
  );
  const configDigest = await pushBlob(registry.url, repository, config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: V2S2,
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.byteLength, digest: configDigest },
    layers: [
      { mediaType: FOREIGN_LAYER, size: base.byteLength, digest: foreignDigest, urls: [foreignUrl] },
      { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: app.byteLength, digest: appDigest },
    ],
  });
  const manifestDigest = await storeManifest(registry.url, storageDir, repository, 'ltsc', manifest);
  return { path: `${repository}:ltsc`, manifestDigest, foreignDigest, foreignUrl, layers };
}
