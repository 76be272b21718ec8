// Local image archives, read in place: the layout is told by its entries, then config and layers
// are found by name and each layer is a slice of the file.
//  - OCI image layout in a tar (image-spec image-layout.md): `oci-layout`, `index.json`, blobs/.
//  - Docker 25+ `docker save`: the same OCI layout plus a legacy `manifest.json` (names from it).
//  - Legacy `docker save` (moby image/spec/v1.2.md): `manifest.json`, `<id>/layer.tar`, `<hex>.json`.
//  - crane / go-containerregistry tarball: `manifest.json`, config `sha256:<hex>`, `<hex>.tar.gz`.
import { sniffCompression } from '../compression.ts';
import { ErrorCode, LongshoreError } from '../errors.ts';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, parseConfig, parseManifest } from '../image/manifest.ts';
import { MediaType } from '../image/media-types.ts';
import type { Descriptor, ImageConfig } from '../image/model.ts';
import { configPlatformLabel } from '../image/platform.ts';
import { TarEntryType } from '../tar/header.ts';
import { cleanPath } from '../listing/entry.ts';
import type { InspectLayer, InspectTarget } from '../listing/target.ts';
import type { RandomAccess } from './random-access.ts';
import { indexTar, type IndexedEntry } from './tar-index.ts';

export type ArchiveFormat = 'oci' | 'docker-oci' | 'docker' | 'tarball';

export const ARCHIVE_FORMAT_LABEL: Record<ArchiveFormat, string> = {
  oci: 'OCI image layout',
  'docker-oci': 'docker save (Docker 25+, OCI layout)',
  docker: 'docker save (legacy)',
  tarball: 'crane tarball',
};

export interface ArchiveLayer extends InspectLayer {
  /** Name of the layer inside the archive. */
  name: string;
  /** The layer's bytes as stored in the archive. */
  open(): ReadableStream<Uint8Array>;
}

export interface ArchiveImage {
  name: string;
  target: InspectTarget;
  layers: ArchiveLayer[];
}

export interface OpenedArchive {
  format: ArchiveFormat;
  images: ArchiveImage[];
  /** Entries of the outer tar. */
  entryCount: number;
}

function archiveError(message: string, hint: string, data: Record<string, unknown> = {}): LongshoreError {
  return new LongshoreError(ErrorCode.Format, message, { hint, data });
}

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

interface LegacyManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

export async function openArchive(source: RandomAccess, options: { signal?: AbortSignal } = {}): Promise<OpenedArchive> {
  refuseCompressed(await source.read(0, 4));
  const entries = await indexTar(source, options.signal ? { signal: options.signal } : {});
  const files = new ArchiveFiles(source, entries);
  const legacy = await files.legacyManifest();
  if (files.has('oci-layout') && files.has('index.json')) {
    return { format: legacy ? 'docker-oci' : 'oci', images: await ociImages(files, legacy), entryCount: entries.length };
  }
  if (legacy) {
    const { images, tarball } = await legacyImages(files, legacy);
    return { format: tarball ? 'tarball' : 'docker', images, entryCount: entries.length };
  }
  const top = [...new Set(entries.map((e) => e.path.split('/')[0]))].slice(0, 8);
  throw archiveError(
    'This tar is not an image archive: it has neither oci-layout + index.json nor manifest.json.',
    'Open a file made by docker save, skopeo/podman (docker-archive or oci-archive), crane pull, or an OCI layout packed with tar.',
    { top },
  );
}

function refuseCompressed(head: Uint8Array): void {
  const compression = sniffCompression(head);
  if (compression === 'none') return;
  throw archiveError(
    `This file is ${compression}-compressed; an image archive is read as a plain tar.`,
    `Decompress it first (e.g. ${compression === 'gzip' ? 'gunzip' : 'unzstd'} image.tar.${compression === 'gzip' ? 'gz' : 'zst'}), then open the .tar.`,
    { compression },
  );
}

/** The outer tar's files by path: links followed, small ones read with a cap, layers as slices. */
class ArchiveFiles {
  readonly #source: RandomAccess;
  readonly #byPath = new Map<string, IndexedEntry>();

  constructor(source: RandomAccess, entries: readonly IndexedEntry[]) {
    this.#source = source;
    for (const e of entries) this.#byPath.set(e.path, e);
  }

  has(path: string): boolean {
    return this.#byPath.has(path);
  }

  /** Follow symlinks inside the archive (docker save links repeated layers) to a regular file. */
  resolve(name: string): IndexedEntry | undefined {
    let path = cleanPath(name);
    for (let hops = 0; hops < 8 && path.ok; hops++) {
      const e = this.#byPath.get(path.path);
      if (!e) return undefined;
      if (e.header.type === TarEntryType.File) return e;
      if (e.header.type !== TarEntryType.Symlink && e.header.type !== TarEntryType.Hardlink) return undefined;
      const link = e.header.linkname ?? '';
      const dir = e.header.type === TarEntryType.Symlink ? path.path.split('/').slice(0, -1).join('/') : '';
      path = cleanPath(link.startsWith('/') ? link : dir ? `${dir}/${link}` : link);
    }
    return undefined;
  }

  /** An OCI blob by digest, if the archive has it. */
  blob(digest: string): IndexedEntry | undefined {
    return /^sha256:[a-f0-9]{64}$/.test(digest) ? this.resolve(`blobs/sha256/${digest.slice(7)}`) : undefined;
  }

  async read(e: IndexedEntry, limit: number, what: string): Promise<Uint8Array> {
    if (e.size > limit)
      throw archiveError(`${what} is ${e.size} bytes, over the ${limit}-byte limit.`, 'The archive looks damaged or hostile.', {
        path: e.path,
      });
    return this.#source.read(e.offset, e.size);
  }

  layer(e: IndexedEntry, name: string, info: Omit<InspectLayer, 'size'>): ArchiveLayer {
    const source = this.#source;
    return { ...info, size: e.size, name, open: () => source.stream(e.offset, e.size) };
  }

  /** docker save's manifest.json (moby image/spec/v1.2.md), when there is one. */
  async legacyManifest(): Promise<LegacyManifestEntry[] | undefined> {
    const entry = this.#byPath.get('manifest.json');
    if (!entry) return undefined;
    const legacy = parseJson<LegacyManifestEntry[]>(await this.read(entry, MAX_MANIFEST_BYTES, 'manifest.json'), 'manifest.json');
    if (!Array.isArray(legacy)) throw archiveError('manifest.json is not a list of images.', 'The archive looks damaged.');
    return legacy;
  }
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as T;
  } catch (err) {
    throw archiveError(`${what} is not valid JSON (${(err as Error).message}).`, 'The archive looks damaged.');
  }
}

/** The images of an OCI layout (image-spec image-layout.md), from index.json down through nested indexes. */
async function ociImages(files: ArchiveFiles, legacy: LegacyManifestEntry[] | undefined): Promise<ArchiveImage[]> {
  const images: ArchiveImage[] = [];
  const visit = async (bytes: Uint8Array, mediaType: string | undefined, names: string[], depth: number): Promise<void> => {
    const parsed = parseManifest(bytes, mediaType, 'A manifest in the archive');
    if (parsed.kind === 'index') {
      if (depth > 4) return;
      for (const d of parsed.manifest.manifests) {
        const child = files.blob(d.digest);
        if (!child) continue; // other platforms are often left out of a save
        const childNames = [d.annotations?.[CONTAINERD_NAME], d.annotations?.[REF_NAME]].filter((n): n is string => !!n);
        await visit(
          await files.read(child, MAX_MANIFEST_BYTES, 'A manifest'),
          d.mediaType,
          childNames.length ? childNames : names,
          depth + 1,
        );
      }
      return;
    }
    const m = parsed.manifest;
    const configEntry = files.blob(m.config.digest);
    if (!configEntry) throw archiveError(`The config ${m.config.digest} is missing from the archive.`, 'The archive is incomplete.');
    const config = parseConfig(await files.read(configEntry, MAX_CONFIG_BYTES, 'The config'), m.layers.length);
    const layers = m.layers.map((d: Descriptor, i: number) => {
      const e = files.blob(d.digest);
      if (!e)
        throw archiveError(
          `Layer ${i + 1} (${d.digest}) is missing from the archive.`,
          'The archive is incomplete (a foreign or lazily-pulled layer?).',
          { digest: d.digest },
        );
      return files.layer(e, `blobs/sha256/${d.digest.slice(7)}`, {
        digest: d.digest,
        mediaType: d.mediaType,
        diffId: config.rootfs.diff_ids[i],
      });
    });
    // Docker 25+ names its images in manifest.json, by config path.
    const fromLegacy = legacy?.find((l) => l.Config === `blobs/sha256/${m.config.digest.slice(7)}`)?.RepoTags?.[0];
    images.push(image(fromLegacy ?? names[0] ?? `image ${images.length + 1}`, config, layers));
  };
  const index = files.resolve('index.json');
  if (!index) throw archiveError('index.json is not a regular file.', 'The archive looks damaged.');
  await visit(await files.read(index, MAX_MANIFEST_BYTES, 'index.json'), MediaType.OciIndex, [], 0);
  if (images.length === 0)
    throw archiveError(
      'index.json names no image whose blobs are in the archive.',
      'Save or copy the image again with its platform included.',
    );
  return images;
}

/** The images of a legacy docker save or a crane tarball, from manifest.json. */
async function legacyImages(files: ArchiveFiles, legacy: LegacyManifestEntry[]): Promise<{ images: ArchiveImage[]; tarball: boolean }> {
  let tarball = false;
  const images = await Promise.all(
    legacy.map(async (item, n) => {
      if (typeof item?.Config !== 'string' || !Array.isArray(item.Layers))
        throw archiveError(`manifest.json entry ${n + 1} has no Config or Layers.`, 'The archive looks damaged.');
      const configEntry = files.resolve(item.Config);
      if (!configEntry) throw archiveError(`The config "${item.Config}" named in manifest.json is missing.`, 'The archive is incomplete.');
      // docker save names the config <hex>.json; go-containerregistry's tarball names it sha256:<hex>.
      if (!item.Config.endsWith('.json')) tarball = true;
      const config = parseConfig(await files.read(configEntry, MAX_CONFIG_BYTES, 'The config'), item.Layers.length);
      const layers = item.Layers.map((name, i) => legacyLayer(files, name, config.rootfs.diff_ids[i]));
      return image(item.RepoTags?.[0] ?? `image ${n + 1}`, config, layers);
    }),
  );
  if (images.length === 0) throw archiveError('manifest.json lists no images.', 'The archive holds no image.');
  return { images, tarball };
}

function legacyLayer(files: ArchiveFiles, name: string, diffId: string | undefined): ArchiveLayer {
  const e = files.resolve(name);
  if (!e) throw archiveError(`Layer "${name}" named in manifest.json is missing.`, 'The archive is incomplete.', { name });
  const hex = /(?:^|\/)(?:sha256:)?([a-f0-9]{64})(?:\.tar(?:\.gz)?)?$/.exec(name)?.[1];
  // A legacy layer.tar is the uncompressed layer: its digest is the diff_id.
  const digest = hex && !name.endsWith('/layer.tar') ? `sha256:${hex}` : (diffId ?? name);
  const mediaType = name.endsWith('.gz') ? MediaType.DockerLayerGzip : MediaType.DockerLayer;
  return files.layer(e, name, { digest, mediaType, diffId });
}

function image(name: string, config: ImageConfig, layers: ArchiveLayer[]): ArchiveImage {
  const target: InspectTarget = {
    reference: name,
    config,
    layers: layers.map(({ digest, mediaType, size, diffId }) => ({ digest, mediaType, size, diffId })),
  };
  const platform = configPlatformLabel(config);
  if (platform) target.platform = platform;
  return { name, target, layers };
}
