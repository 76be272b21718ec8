// The benchmark image: real files from /usr/lib and /usr/share (binaries, libraries, data — mixed
// compressibility like a real base image) in several GNU tar layers added by umoci (gzip), plus a
// zstd variant of the very same tars (same diff_ids, same config). Built once per size under
// .cache/bench/ and reused; pushed with skopeo to the harness's token-auth registry.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { run } from '../helpers/command.ts';
import { MediaType, reproducibleTarOptions, skopeoCopy, type Descriptor } from '../helpers/images.ts';
import type { Credentials } from '../helpers/registries.ts';

export type Variant = 'gzip' | 'zstd';
export const VARIANTS: readonly Variant[] = ['gzip', 'zstd'];

/** Bump when the recipe changes, so old cached images are not reused. */
const RECIPE = 2;
const SOURCE_ROOTS = ['usr/lib', 'usr/share'];
/** Share of the compressed target per layer: one big base layer, then smaller ones, like real images. */
const LAYER_WEIGHTS = [0.34, 0.22, 0.16, 0.12, 0.09, 0.07];
const MAX_LAYERS = 12;
/** First guess of compressed/uncompressed for /usr/lib; corrected after every layer. */
const INITIAL_RATIO = 0.45;
const MAX_FILE_BYTES = 64e6;
const CREATED = '2024-01-01T00:00:00Z';

export interface BenchLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
  uncompressedSize: number;
}

export interface BenchImage {
  /** '400MB' */
  label: string;
  variant: Variant;
  /** OCI layout directory holding both variants. */
  layoutDir: string;
  manifestDigest: string;
  manifestRaw: string;
  config: Descriptor;
  layers: BenchLayer[];
  /** Sum of the layer blobs as the registry serves them. */
  compressedBytes: number;
  uncompressedBytes: number;
}

interface CacheRecord {
  recipe: number;
  label: string;
  targetBytes: number;
  builtAt: string;
  buildSeconds: number;
  images: Record<Variant, Omit<BenchImage, 'layoutDir'>>;
}

/** '100MB' → 100e6, '1.5GB' → 1.5e9 (decimal units, as registries and `docker images` count). */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(MB|GB)$/i.exec(text.trim());
  if (!match) throw new Error(`--size must look like 100MB, 400MB or 1.5GB, got ${JSON.stringify(text)}`);
  return Number(match[1]) * (match[2]!.toUpperCase() === 'GB' ? 1e9 : 1e6);
}

interface SourceEntry {
  /** Relative to '/', no leading slash. */
  path: string;
  type: 'dir' | 'file' | 'symlink';
  size: number;
}

/** Pre-order walk, names in byte order, so every build lists the same entries in the same order. */
function walk(root: string): SourceEntry[] {
  const out: SourceEntry[] = [];
  const visit = (rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(`/${rel}`);
    } catch {
      return;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const path = `${rel}/${name}`;
      let info;
      try {
        info = lstatSync(`/${path}`);
      } catch {
        continue;
      }
      if (info.isDirectory()) {
        out.push({ path, type: 'dir', size: 0 });
        visit(path);
      } else if (info.isFile()) out.push({ path, type: 'file', size: info.size });
      else if (info.isSymbolicLink()) out.push({ path, type: 'symlink', size: 0 });
    }
  };
  visit(root);
  return out;
}

/** Takes files in walk order; after the last one it starts over, the copies going under `copyN/`. */
class FileCursor {
  readonly #entries: SourceEntry[];
  #index = 0;
  #round = 0;

  /** Files above `maxFileBytes` are left out: one 250 MB binary would swallow a small layer's budget. */
  constructor(entries: SourceEntry[], maxFileBytes: number) {
    this.#entries = entries.filter((e) => e.type !== 'dir' && e.size <= maxFileBytes);
    if (this.#entries.length === 0) throw new Error(`no files under /${SOURCE_ROOTS.join(', /')}`);
  }

  /** Entries (with their parent directories first) adding up to at least `bytes`, never across a restart. */
  take(bytes: number): { paths: string[]; bytes: number; round: number } {
    if (this.#index >= this.#entries.length) {
      this.#index = 0;
      this.#round++;
    }
    const paths: string[] = [];
    const dirs = new Set<string>();
    let total = 0;
    while (this.#index < this.#entries.length && total < bytes) {
      const entry = this.#entries[this.#index++]!;
      const parents: string[] = [];
      for (let dir = posix.dirname(entry.path); dir !== '.' && !dirs.has(dir); dir = posix.dirname(dir)) parents.unshift(dir);
      for (const dir of parents) {
        dirs.add(dir);
        paths.push(dir);
      }
      paths.push(entry.path);
      total += entry.size;
    }
    return { paths, bytes: total, round: this.#round };
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function writeBlob(layoutDir: string, bytes: string): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(layoutDir, 'blobs/sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: Buffer.byteLength(bytes) };
}

async function moveIntoLayout(layoutDir: string, file: string): Promise<{ digest: string; size: number }> {
  const hex = await sha256File(file);
  const size = (await stat(file)).size;
  await rename(file, join(layoutDir, 'blobs/sha256', hex));
  return { digest: `sha256:${hex}`, size };
}

async function readLayoutManifest(layoutDir: string, tag: string): Promise<{ config: Descriptor; layers: Descriptor[] }> {
  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const entry = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`no tag ${tag} in ${layoutDir}`);
  return JSON.parse(await readFile(join(layoutDir, 'blobs/sha256', entry.digest.slice(7)), 'utf8')) as {
    config: Descriptor;
    layers: Descriptor[];
  };
}

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

async function build(dir: string, label: string, targetBytes: number): Promise<CacheRecord> {
  const started = performance.now();
  const layoutDir = join(dir, 'layout');
  const workDir = join(dir, 'work');
  await rm(dir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  await run('umoci', ['init', '--layout', layoutDir]);
  const image = `${layoutDir}:gzip`;
  await run('umoci', ['new', '--image', image]);

  log(`building the ${label} image from /${SOURCE_ROOTS.join(' and /')} (once; cached in ${dir})`);
  const smallestLayer = (Math.min(...LAYER_WEIGHTS) * targetBytes) / INITIAL_RATIO;
  const cursor = new FileCursor(SOURCE_ROOTS.flatMap(walk), Math.min(MAX_FILE_BYTES, smallestLayer / 2));
  const zstdLayers: { digest: string; size: number }[] = [];
  const uncompressedSizes: number[] = [];
  let compressed = 0;
  let uncompressed = 0;
  for (let i = 0; i < MAX_LAYERS; i++) {
    const planned = LAYER_WEIGHTS[i];
    if (planned === undefined && compressed >= targetBytes) break;
    const ratio = uncompressed > 0 ? compressed / uncompressed : INITIAL_RATIO;
    const want = planned !== undefined ? planned * targetBytes : Math.max(targetBytes - compressed, 0.02 * targetBytes) * 1.05;
    const chosen = cursor.take(want / ratio);
    const listFile = join(workDir, `layer-${i}.list`);
    const tarFile = join(workDir, `layer-${i}.tar`);
    await writeFile(listFile, chosen.paths.map((p) => `${p}\0`).join(''));
    await run('tar', [
      '--create',
      `--file=${tarFile}`,
      '--directory=/',
      ...reproducibleTarOptions(),
      '--no-recursion',
      // Later rounds reuse the same files under another top directory; symlink texts stay as they are.
      ...(chosen.round > 0 ? [`--transform=s,^,copy${chosen.round}/,S`] : []),
      '--null',
      `--files-from=${listFile}`,
    ]);
    const tarSize = (await stat(tarFile)).size;
    await run('umoci', [
      'raw',
      'add-layer',
      '--image',
      image,
      '--history.created',
      CREATED,
      '--history.created_by',
      `longshore bench layer ${i}`,
      tarFile,
    ]);
    const zstdFile = join(workDir, `layer-${i}.tar.zst`);
    await run('zstd', ['-q', '-T0', '-3', '--no-progress', '-f', '-o', zstdFile, tarFile]);
    zstdLayers.push(await moveIntoLayout(layoutDir, zstdFile));
    await rm(tarFile);
    await rm(listFile);
    const gzipSize = (await readLayoutManifest(layoutDir, 'gzip')).layers[i]!.size;
    compressed += gzipSize;
    uncompressed += tarSize;
    uncompressedSizes.push(tarSize);
    log(
      `  layer ${i + 1}: ${(tarSize / 1e6).toFixed(0)} MB tar → ${(gzipSize / 1e6).toFixed(0)} MB gzip, ${(zstdLayers[i]!.size / 1e6).toFixed(0)} MB zstd`,
    );
  }
  if (compressed < targetBytes)
    throw new Error(`image reached only ${compressed} of ${targetBytes} compressed bytes in ${MAX_LAYERS} layers`);
  await run('umoci', [
    'config',
    '--image',
    image,
    '--created',
    CREATED,
    '--history.created',
    CREATED,
    '--architecture',
    'amd64',
    '--os',
    'linux',
    '--config.cmd',
    '/bin/sh',
  ]);

  const umoci = await readLayoutManifest(layoutDir, 'gzip');
  const configRaw = await readFile(join(layoutDir, 'blobs/sha256', umoci.config.digest.slice(7)), 'utf8');
  const diffIds = (JSON.parse(configRaw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  const config: Descriptor = { mediaType: MediaType.ociConfig, digest: umoci.config.digest, size: umoci.config.size };
  const images = {} as CacheRecord['images'];
  const tags: Descriptor[] = [];
  for (const variant of VARIANTS) {
    const layers: BenchLayer[] = umoci.layers.map((l, i) => {
      const blob = variant === 'gzip' ? l : zstdLayers[i]!;
      return {
        mediaType: variant === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayerZstd,
        digest: blob.digest,
        size: blob.size,
        diffId: diffIds[i]!,
        uncompressedSize: uncompressedSizes[i]!,
      };
    });
    // Written by hand so the manifest carries its mediaType (image-spec manifest.md), which umoci 0.4 leaves out.
    const manifestRaw = JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config,
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    });
    const manifest = await writeBlob(layoutDir, manifestRaw);
    tags.push({
      mediaType: MediaType.ociManifest,
      digest: manifest.digest,
      size: manifest.size,
      annotations: { 'org.opencontainers.image.ref.name': variant },
    });
    images[variant] = {
      label,
      variant,
      manifestDigest: manifest.digest,
      manifestRaw,
      config,
      layers,
      compressedBytes: layers.reduce((a, l) => a + l.size, 0),
      uncompressedBytes: layers.reduce((a, l) => a + l.uncompressedSize, 0),
    };
  }
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: tags }));
  // umoci's own manifest and config history for the intermediate steps stay as unreferenced blobs; harmless.
  await rm(workDir, { recursive: true, force: true });
  const record: CacheRecord = {
    recipe: RECIPE,
    label,
    targetBytes,
    builtAt: new Date().toISOString(),
    buildSeconds: (performance.now() - started) / 1000,
    images,
  };
  await writeFile(join(dir, 'image.json'), `${JSON.stringify(record, null, 2)}\n`);
  log(`built in ${record.buildSeconds.toFixed(0)} s`);
  return record;
}

function cacheIsWhole(dir: string, record: CacheRecord, targetBytes: number): boolean {
  if (record.recipe !== RECIPE || record.targetBytes !== targetBytes) return false;
  for (const variant of VARIANTS) {
    const img = record.images[variant];
    if (!img) return false;
    for (const d of [img.config, ...img.layers, { digest: img.manifestDigest, size: Buffer.byteLength(img.manifestRaw) }]) {
      const file = join(dir, 'layout/blobs/sha256', d.digest.slice(7));
      if (!existsSync(file) || statSync(file).size !== d.size) return false;
    }
  }
  return true;
}

/** Both variants of the image for `label`, from the cache or freshly built. */
export async function benchImages(cacheRoot: string, label: string, targetBytes: number): Promise<Record<Variant, BenchImage>> {
  const dir = join(cacheRoot, `image-${label}`);
  let record: CacheRecord | undefined;
  try {
    record = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as CacheRecord;
  } catch {
    record = undefined;
  }
  if (record && cacheIsWhole(dir, record, targetBytes)) log(`using the cached ${label} image (${dir})`);
  else record = await build(dir, label, targetBytes);
  const layoutDir = join(dir, 'layout');
  return { gzip: { ...record.images.gzip, layoutDir }, zstd: { ...record.images.zstd, layoutDir } };
}

/** skopeo pushes the variant's tag byte for byte; blobs the registry already has are skipped. */
export async function pushImage(image: BenchImage, destination: string, env: NodeJS.ProcessEnv, credentials: Credentials): Promise<void> {
  await skopeoCopy(`oci:${image.layoutDir}:${image.variant}`, `docker://${destination}`, {
    env,
    preserveDigests: true,
    destCredentials: credentials,
  });
}
