// The benchmark image: real files from /usr/lib and /usr/share (binaries, libraries, data — mixed
// compressibility like a real base image) in several GNU tar layers added by umoci (gzip), plus a
// zstd variant of the very same tars (same diff_ids, same config), made only when asked for. Two
// shapes: `default` (a big base layer and smaller ones) and `big-layer` (one layer of ~87 % of
// the image, like CUDA or model images, then two small ones). Built once per size and shape under
// .cache/bench/ and reused; pushed with skopeo to the harness's token-auth registry.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import { run } from '../helpers/command.ts';
import { MediaType, reproducibleTarOptions, skopeoCopy, type Descriptor } from '../helpers/images.ts';
import type { Credentials } from '../helpers/registries.ts';

export type Variant = 'gzip' | 'zstd';
export const VARIANTS: readonly Variant[] = ['gzip', 'zstd'];

export type Shape = 'default' | 'big-layer';
export const SHAPES: readonly Shape[] = ['default', 'big-layer'];

/** Bump a shape's number when its recipe changes, so old cached images of it are not reused. */
const RECIPE: Record<Shape, number> = { default: 2, 'big-layer': 1 };
const SOURCE_ROOTS = ['usr/lib', 'usr/share'];
/**
 * Share of the compressed target per layer. default: one big base layer, then smaller ones, like
 * real images. big-layer: one dominant layer, then two small ones, the last taking what is left.
 */
const LAYER_WEIGHTS: Record<Shape, readonly number[]> = {
  default: [0.34, 0.22, 0.16, 0.12, 0.09, 0.07],
  // The sampled ratio (estimateRatio) comes out a few % high, so the big layer lands near 88–90 %.
  'big-layer': [0.87, 0.06],
};
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
  /** Absent in records written before shapes existed: default. */
  shape?: Shape;
  label: string;
  targetBytes: number;
  builtAt: string;
  buildSeconds: number;
  /** Seconds spent making the zstd variant, when it was made. */
  zstdSeconds?: number;
  images: Partial<Record<Variant, Omit<BenchImage, 'layoutDir'>>>;
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

  /**
   * Entries (with their parent directories first) adding up to at least `bytes`, in chunks of one
   * round each: a chunk never crosses a restart, and without `acrossRounds` only one chunk is taken.
   */
  take(bytes: number, acrossRounds = false): Chunk[] {
    const chunks: Chunk[] = [];
    let total = 0;
    do {
      if (this.#index >= this.#entries.length) {
        this.#index = 0;
        this.#round++;
      }
      const chunk: Chunk = { paths: [], files: [], bytes: 0, round: this.#round };
      const dirs = new Set<string>();
      while (this.#index < this.#entries.length && total < bytes) {
        const entry = this.#entries[this.#index++]!;
        const parents: string[] = [];
        for (let dir = posix.dirname(entry.path); dir !== '.' && !dirs.has(dir); dir = posix.dirname(dir)) parents.unshift(dir);
        for (const dir of parents) {
          dirs.add(dir);
          chunk.paths.push(dir);
        }
        chunk.paths.push(entry.path);
        chunk.files.push(entry);
        chunk.bytes += entry.size;
        total += entry.size;
      }
      chunks.push(chunk);
    } while (acrossRounds && total < bytes);
    return chunks;
  }

  /** Where the cursor stands, to take again from the same place (see estimateRatio). */
  mark(): { index: number; round: number } {
    return { index: this.#index, round: this.#round };
  }

  reset(mark: { index: number; round: number }): void {
    this.#index = mark.index;
    this.#round = mark.round;
  }
}

interface Chunk {
  paths: string[];
  files: SourceEntry[];
  bytes: number;
  round: number;
}

/**
 * gzip's ratio over `files`, from 200 probes spread evenly over their bytes: each gzips (level 6,
 * as umoci's default) 256 KiB of the files from the one the probe falls in onwards, as one
 * stream, so small files compress together as they do in the tar. One layer of ~87 % of the image
 * cannot be corrected layer by layer as the default shape is, so its size rests on this. Repeated
 * rounds are the same files, so they compress alike: gzip's 32 KiB window (RFC 1951 §2) never
 * reaches back to the previous round.
 */
async function estimateRatio(files: readonly SourceEntry[]): Promise<number> {
  const total = files.reduce((n, f) => n + f.size, 0);
  const probes = 200;
  const window = 256 * 1024;
  const step = total / probes;
  const buffer = Buffer.alloc(window);
  let sum = 0;
  let counted = 0;
  let at = 0;
  let next = step / 2;
  for (const [index, file] of files.entries()) {
    const end = at + file.size;
    let hits = 0;
    while (next < end) {
      hits++;
      next += step;
    }
    at = end;
    if (hits === 0) continue;
    let filled = 0;
    for (let j = index; j < files.length && filled < window; j++) {
      if (files[j]!.type !== 'file') continue;
      const handle = await open(`/${files[j]!.path}`, 'r').catch(() => undefined);
      if (!handle) continue;
      try {
        filled += (await handle.read(buffer, filled, window - filled, 0)).bytesRead;
      } finally {
        await handle.close();
      }
    }
    if (filled === 0) continue;
    sum += hits * (gzipSync(buffer.subarray(0, filled), { level: 6 }).length / filled);
    counted += hits;
  }
  return counted > 0 ? sum / counted : INITIAL_RATIO;
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

/** A layer's tar from the cursor's chunks: the first created, later rounds appended under `copyN/`. */
async function writeTar(tarFile: string, listFile: string, chunks: readonly Chunk[]): Promise<void> {
  for (const [i, chunk] of chunks.entries()) {
    await writeFile(listFile, chunk.paths.map((p) => `${p}\0`).join(''));
    await run('tar', [
      i === 0 ? '--create' : '--append',
      `--file=${tarFile}`,
      '--directory=/',
      ...reproducibleTarOptions(),
      '--no-recursion',
      // Later rounds reuse the same files under another top directory; symlink texts stay as they are.
      ...(chunk.round > 0 ? [`--transform=s,^,copy${chunk.round}/,S`] : []),
      '--null',
      `--files-from=${listFile}`,
    ]);
  }
  await rm(listFile);
}

interface BuiltLayers {
  layoutDir: string;
  config: Descriptor;
  gzip: Descriptor[];
  diffIds: string[];
  uncompressedSizes: number[];
}

async function build(dir: string, label: string, targetBytes: number, shape: Shape): Promise<{ record: CacheRecord; built: BuiltLayers }> {
  const started = performance.now();
  const layoutDir = join(dir, 'layout');
  const workDir = join(dir, 'work');
  await rm(dir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  await run('umoci', ['init', '--layout', layoutDir]);
  const image = `${layoutDir}:gzip`;
  await run('umoci', ['new', '--image', image]);

  log(`building the ${label} ${shape} image from /${SOURCE_ROOTS.join(' and /')} (once; cached in ${dir})`);
  const weights = LAYER_WEIGHTS[shape];
  // The files' size limit follows the smallest planned layer (big-layer: its last one, ~5 %).
  const smallestLayer = (Math.min(...weights, shape === 'default' ? 1 : 0.05) * targetBytes) / INITIAL_RATIO;
  const cursor = new FileCursor(SOURCE_ROOTS.flatMap(walk), Math.min(MAX_FILE_BYTES, smallestLayer / 2));
  const uncompressedSizes: number[] = [];
  let compressed = 0;
  let uncompressed = 0;
  for (let i = 0; i < MAX_LAYERS; i++) {
    const layerStarted = performance.now();
    const planned = weights[i];
    // big-layer always ends with a small layer taking what is left of the target.
    const remainder = shape === 'big-layer' && i === weights.length;
    if (planned === undefined && compressed >= targetBytes && !remainder) break;
    let ratio = uncompressed > 0 ? compressed / uncompressed : INITIAL_RATIO;
    const want =
      planned !== undefined
        ? planned * targetBytes
        : shape === 'default'
          ? Math.max(targetBytes - compressed, 0.02 * targetBytes) * 1.05
          : Math.max(targetBytes - compressed, 0.04 * targetBytes) * 1.02;
    const acrossRounds = shape === 'big-layer';
    if (shape === 'big-layer') {
      // Too few layers to learn the ratio from the ones before: estimate it on the files
      // themselves, twice (the second pick holds more or fewer files than the first).
      const mark = cursor.mark();
      for (let pass = 0; pass < 2; pass++) {
        ratio = await estimateRatio(cursor.take(want / ratio, true).flatMap((c) => c.files));
        cursor.reset(mark);
      }
    }
    const chunks = cursor.take(want / ratio, acrossRounds);
    const tarFile = join(workDir, `layer-${i}.tar`);
    await writeTar(tarFile, join(workDir, `layer-${i}.list`), chunks);
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
    await rm(tarFile);
    const gzipSize = (await readLayoutManifest(layoutDir, 'gzip')).layers[i]!.size;
    compressed += gzipSize;
    uncompressed += tarSize;
    uncompressedSizes.push(tarSize);
    const rounds = chunks.length > 1 ? `, rounds ${chunks[0]!.round}–${chunks.at(-1)!.round} of the files` : '';
    log(
      `  layer ${i + 1}: ${(tarSize / 1e6).toFixed(0)} MB tar → ${(gzipSize / 1e6).toFixed(0)} MB gzip (ratio ${(gzipSize / tarSize).toFixed(3)}, estimated ${ratio.toFixed(3)}${rounds}) in ${((performance.now() - layerStarted) / 1000).toFixed(0)} s`,
    );
  }
  if (compressed < targetBytes)
    throw new Error(`image reached only ${compressed} of ${targetBytes} compressed bytes in ${uncompressedSizes.length} layers`);
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
  // umoci's own manifest and config history for the intermediate steps stay as unreferenced blobs; harmless.
  await rm(workDir, { recursive: true, force: true });
  const record: CacheRecord = {
    recipe: RECIPE[shape],
    shape,
    label,
    targetBytes,
    builtAt: new Date().toISOString(),
    buildSeconds: (performance.now() - started) / 1000,
    images: {},
  };
  const biggest = Math.max(...umoci.layers.map((l) => l.size));
  log(
    `built the gzip layers in ${record.buildSeconds.toFixed(0)} s: ${(compressed / 1e6).toFixed(0)} MB in ${umoci.layers.length} layers, ` +
      `the biggest ${((100 * biggest) / compressed).toFixed(0)} % of it`,
  );
  return { record, built: { layoutDir, config, gzip: umoci.layers, diffIds, uncompressedSizes } };
}

/**
 * The zstd variant: each gzip layer decompressed and given to the `zstd` CLI (level 3, all cores),
 * so the tars — and the diff_ids — are the very same. `--stream-size` puts the content size in the
 * frame header as a file input would.
 */
async function zstdLayers(built: BuiltLayers): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const [i, layer] of built.gzip.entries()) {
    const file = join(built.layoutDir, `layer-${i}.tar.zst.partial`);
    const child = spawn('zstd', ['-q', '-T0', '-3', '--no-progress', `--stream-size=${built.uncompressedSizes[i]}`, '-f', '-o', file], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    await pipeline(createReadStream(join(built.layoutDir, 'blobs/sha256', layer.digest.slice(7))), createGunzip(), child.stdin);
    const code = await exited;
    if (code !== 0) throw new Error(`zstd failed (${code}): ${stderr.trim()}`);
    const blob = await moveIntoLayout(built.layoutDir, file);
    out.push({ mediaType: MediaType.ociLayerZstd, ...blob });
    log(`  layer ${i + 1}: ${(blob.size / 1e6).toFixed(0)} MB zstd`);
  }
  return out;
}

/** The variant's manifest, written by hand so it carries its mediaType (image-spec manifest.md), which umoci 0.4 leaves out. */
async function addVariant(built: BuiltLayers, variant: Variant, record: CacheRecord, label: string): Promise<void> {
  const blobs = variant === 'gzip' ? built.gzip : await zstdLayers(built);
  const layers: BenchLayer[] = blobs.map((blob, i) => ({
    mediaType: variant === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayerZstd,
    digest: blob.digest,
    size: blob.size,
    diffId: built.diffIds[i]!,
    uncompressedSize: built.uncompressedSizes[i]!,
  }));
  const manifestRaw = JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: built.config,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  const manifest = await writeBlob(built.layoutDir, manifestRaw);
  record.images[variant] = {
    label,
    variant,
    manifestDigest: manifest.digest,
    manifestRaw,
    config: built.config,
    layers,
    compressedBytes: layers.reduce((a, l) => a + l.size, 0),
    uncompressedBytes: layers.reduce((a, l) => a + l.uncompressedSize, 0),
  };
}

/** index.json: one tag per variant the record holds. */
async function writeIndex(layoutDir: string, record: CacheRecord): Promise<void> {
  const tags: Descriptor[] = Object.values(record.images).map((img) => ({
    mediaType: MediaType.ociManifest,
    digest: img.manifestDigest,
    size: Buffer.byteLength(img.manifestRaw),
    annotations: { 'org.opencontainers.image.ref.name': img.variant },
  }));
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: tags }));
}

function variantIsWhole(dir: string, record: CacheRecord, variant: Variant): boolean {
  const img = record.images[variant];
  if (!img) return false;
  for (const d of [img.config, ...img.layers, { digest: img.manifestDigest, size: Buffer.byteLength(img.manifestRaw) }]) {
    const file = join(dir, 'layout/blobs/sha256', d.digest.slice(7));
    if (!existsSync(file) || statSync(file).size !== d.size) return false;
  }
  return true;
}

/** The cache directory of a size and shape (the default shape keeps the name it always had). */
export function imageDir(cacheRoot: string, label: string, shape: Shape): string {
  return join(cacheRoot, shape === 'default' ? `image-${label}` : `image-${label}-${shape}`);
}

/**
 * The image for `label` and `shape` in the asked variants, from the cache or freshly built. The
 * zstd variant is made only when asked for (it doubles the build time and the disk), and later
 * from the cached gzip layers when a run first asks for it.
 */
export async function benchImages(
  cacheRoot: string,
  label: string,
  targetBytes: number,
  shape: Shape,
  variants: readonly Variant[],
): Promise<Partial<Record<Variant, BenchImage>>> {
  const dir = imageDir(cacheRoot, label, shape);
  let record: CacheRecord | undefined;
  try {
    record = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as CacheRecord;
  } catch {
    record = undefined;
  }
  const layoutDir = join(dir, 'layout');
  const usable =
    record &&
    record.recipe === RECIPE[shape] &&
    (record.shape ?? 'default') === shape &&
    record.targetBytes === targetBytes &&
    variantIsWhole(dir, record, 'gzip');
  let built: BuiltLayers | undefined;
  if (usable) {
    log(`using the cached ${label} ${shape} image (${dir})`);
  } else {
    ({ record, built } = await build(dir, label, targetBytes, shape));
    await addVariant(built, 'gzip', record, label);
  }
  record = record!;
  const missing = variants.filter((v) => !variantIsWhole(dir, record, v));
  if (missing.includes('zstd')) {
    const started = performance.now();
    const gzip = record.images.gzip!;
    built ??= {
      layoutDir,
      config: gzip.config,
      gzip: gzip.layers,
      diffIds: gzip.layers.map((l) => l.diffId),
      uncompressedSizes: gzip.layers.map((l) => l.uncompressedSize),
    };
    log(`making the zstd variant of the ${label} ${shape} image from its gzip layers`);
    await addVariant(built, 'zstd', record, label);
    record.zstdSeconds = (performance.now() - started) / 1000;
    log(`zstd variant made in ${record.zstdSeconds.toFixed(0)} s`);
  }
  if (!usable || missing.length > 0) {
    await writeIndex(layoutDir, record);
    await writeFile(join(dir, 'image.json'), `${JSON.stringify(record, null, 2)}\n`);
  }
  return Object.fromEntries(variants.map((v) => [v, { ...record.images[v]!, layoutDir }]));
}

/** skopeo pushes the variant's tag byte for byte; blobs the registry already has are skipped. */
export async function pushImage(image: BenchImage, destination: string, env: NodeJS.ProcessEnv, credentials: Credentials): Promise<void> {
  await skopeoCopy(`oci:${image.layoutDir}:${image.variant}`, `docker://${destination}`, {
    env,
    preserveDigests: true,
    destCredentials: credentials,
  });
}
