// Judges for the archive formats beside legacy, with independent readers only (GNU tar, node:crypto,
// skopeo, umoci, podman) against the registry's truth (skopeo inspect --raw, and the blobs as the
// registry stores them on disk):
// - OCI image layouts in a tar: the oci format, and the docker format (Docker 25+ `docker save`),
//   whose tar is one too;
// - docker-archives (manifest.json) whose layers may stay compressed: docker, tarball, legacy;
// - `podman load` into throw-away storage.
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandFailedError, run, runText } from './command.ts';
import type { BlobTruth, FixtureChildTruth, ManifestTruth } from './fixtures.ts';
import { storedBlobPath, tarListing } from './validate.ts';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
}

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function fail(message: string): never {
  throw new Error(message);
}

function isIndex(d: { mediaType?: string }, body?: { manifests?: unknown }): boolean {
  return d.mediaType === OCI_INDEX || d.mediaType === DOCKER_LIST || (d.mediaType === undefined && Array.isArray(body?.manifests));
}

/** A temporary directory, removed after `fn` whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** GNU tar's listing of a layer file, decompressed as its media type says (what registryLayerListing does for the registry's copy). */
export async function layerListing(path: string, mediaType: string): Promise<string[]> {
  const flag = /zstd$/.test(mediaType) ? ['--zstd'] : /gzip$/.test(mediaType) ? ['-z'] : [];
  return tarListing(await runText('tar', [...flag, '-tvf', path]));
}

/** Layer media types GNU tar can list (attestation layers are in-toto JSON, not tar). */
function isTarLayer(mediaType: string): boolean {
  return /(\.tar|tar\.gzip|tar\+gzip|tar\+zstd)$/.test(mediaType);
}

async function compareLayer(storageDir: string, path: string, d: Descriptor, what: string): Promise<void> {
  if (!isTarLayer(d.mediaType)) return;
  const ours = await layerListing(path, d.mediaType);
  const theirs = await layerListing(storedBlobPath(storageDir, d.digest), d.mediaType);
  if (JSON.stringify(ours) !== JSON.stringify(theirs))
    fail(`${what} lists differently from the registry's blob:\n${ours.join('\n')}\n---\n${theirs.join('\n')}`);
}

// ---- OCI image layout --------------------------------------------------------------------------

export interface OciArchiveCheck {
  file: string;
  storageDir: string;
  skopeoEnv: NodeJS.ProcessEnv;
  /** What index.json's one entry must point at: the registry's manifest, or its index for all platforms. */
  target: ManifestTruth;
  /** The config of the image skopeo picks (linux/amd64 for an index). */
  config: BlobTruth;
  /** An index's children, as the registry lists them (attestations included). */
  children?: FixtureChildTruth[];
  /** index.json's annotations on that entry, exactly. */
  annotations: Record<string, string>;
  /** Extra index.json entries allowed (the docker format with several images). */
  entries?: number;
  /** `umoci unpack --image DIR:TAG`: expect success (and these files in the rootfs), or umoci's own refusal. */
  umoci: { tag: string; files: string[]; absent?: string[] } | { tag: string; refuses: RegExp };
}

export interface OciArchiveResult {
  /** Every blob path in the layout. */
  blobs: string[];
  index: Index;
}

/**
 * An OCI image layout in a tar: GNU tar unpacks it; oci-layout and index.json are as image-spec
 * image-layout.md says; every blob reachable from index.json is there under its own digest (sha256
 * by node:crypto) and size, and nothing else is; manifest, config and every layer are byte-exact
 * the registry's (layers also list under GNU tar like the registry's); skopeo reads it raw and
 * cooked and copies it (re-verifying every digest); umoci unpacks it where umoci can.
 */
export async function validateOciArchive(c: OciArchiveCheck): Promise<OciArchiveResult> {
  return withTempDir('longshore-oci-', async (dir) => {
    const layout = join(dir, 'layout');
    await run('mkdir', ['-p', layout]);
    await run('tar', ['-xf', c.file, '-C', layout]);
    const layoutFile = JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8')) as unknown;
    if (JSON.stringify(layoutFile) !== '{"imageLayoutVersion":"1.0.0"}') fail(`oci-layout is ${JSON.stringify(layoutFile)}`);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as Index;
    if (index.schemaVersion !== 2 || index.mediaType !== OCI_INDEX)
      fail(`index.json is not an OCI index: ${JSON.stringify(index).slice(0, 200)}`);
    if (index.manifests.length !== (c.entries ?? 1)) fail(`index.json has ${index.manifests.length} entries, expected ${c.entries ?? 1}`);
    const entry =
      index.manifests.find((d) => d.digest === c.target.digest) ??
      fail(`index.json does not list ${c.target.digest}: ${JSON.stringify(index)}`);
    if (entry.size !== c.target.size) fail(`index.json says ${entry.size} bytes for ${entry.digest}, the registry ${c.target.size}`);
    if (c.target.mediaType && entry.mediaType !== c.target.mediaType)
      fail(`index.json says ${entry.mediaType}, the registry ${c.target.mediaType}`);
    if (JSON.stringify(entry.annotations) !== JSON.stringify(c.annotations))
      fail(`annotations ${JSON.stringify(entry.annotations)} != ${JSON.stringify(c.annotations)}`);

    // Walk from index.json: every reachable blob present, named by its digest, of its size.
    const reached = new Map<string, Descriptor>();
    const blobFile = (digest: string) => join(layout, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
    const readBlob = async (d: Descriptor): Promise<Buffer> => {
      const bytes = await readFile(blobFile(d.digest)).catch(() => fail(`blob ${d.digest} (${d.mediaType}) is missing`));
      if (bytes.byteLength !== d.size) fail(`blob ${d.digest} is ${bytes.byteLength} bytes, its descriptor says ${d.size}`);
      if (sha256(bytes) !== d.digest) fail(`blob ${d.digest} hashes to ${sha256(bytes)}`);
      reached.set(d.digest, d);
      return bytes;
    };
    const walk = async (d: Descriptor): Promise<void> => {
      const bytes = await readBlob(d);
      const body = JSON.parse(bytes.toString('utf8')) as Index & Manifest;
      if (isIndex(d, body)) {
        for (const child of body.manifests) await walk(child);
        return;
      }
      await readBlob(body.config);
      for (const [i, layer] of body.layers.entries()) {
        const size = (await stat(blobFile(layer.digest)).catch(() => fail(`layer ${layer.digest} is missing`))).size;
        if (size !== layer.size) fail(`layer ${layer.digest} is ${size} bytes, its descriptor says ${layer.size}`);
        await readBlob(layer);
        await compareLayer(c.storageDir, blobFile(layer.digest), layer, `layer ${i + 1} of ${d.digest}`);
      }
    };
    for (const d of index.manifests) await walk(d);
    const present = (await readdir(join(layout, 'blobs', 'sha256'))).map((hex) => `sha256:${hex}`).sort();
    const expected = [...reached.keys()].sort();
    if (JSON.stringify(present) !== JSON.stringify(expected))
      fail(`blobs present ${present.length}, reachable ${expected.length}: extra ${present.filter((p) => !reached.has(p)).join(', ')}`);

    // Byte-exact against the registry.
    if ((await readFile(blobFile(c.target.digest), 'utf8')) !== c.target.raw)
      fail(`the manifest in the layout differs from the registry's`);
    for (const child of c.children ?? []) {
      if ((await readFile(blobFile(child.manifest.digest), 'utf8')) !== child.manifest.raw)
        fail(`child ${child.manifest.digest} differs from the registry's`);
      if ((await readFile(blobFile(child.config.digest), 'utf8')) !== child.config.raw)
        fail(`child config ${child.config.digest} differs from the registry's`);
    }
    if ((await readFile(blobFile(c.config.digest), 'utf8')) !== c.config.raw) fail(`the config in the layout differs from the registry's`);

    // skopeo: raw and cooked, then a full copy (which re-verifies every blob's digest).
    const opts = { env: c.skopeoEnv };
    const amd64 = ['--insecure-policy', '--override-arch', 'amd64', '--override-os', 'linux'];
    const source =
      c.entries && c.entries > 1 ? `oci-archive:${c.file}:${c.annotations['org.opencontainers.image.ref.name']}` : `oci-archive:${c.file}`;
    const raw = await run('skopeo', [...amd64, 'inspect', '--raw', source], opts);
    if (sha256(raw) !== c.target.digest) fail(`skopeo reads manifest ${sha256(raw)}, expected ${c.target.digest}`);
    const config = (await run('skopeo', [...amd64, 'inspect', '--config', '--raw', source], opts)).toString('utf8');
    if (config !== c.config.raw) fail(`skopeo reads a different config:\n${config.slice(0, 300)}`);
    await run(
      'skopeo',
      [...amd64, 'copy', '--quiet', '--preserve-digests', ...(c.children ? ['--all'] : []), source, `dir:${join(dir, 'copied')}`],
      opts,
    );

    // umoci (0.4: OCI media types, gzip or plain layers, one manifest per tag).
    const bundle = join(dir, 'bundle');
    const unpack = run('umoci', ['unpack', '--image', `${layout}:${c.umoci.tag}`, bundle]);
    if ('refuses' in c.umoci) {
      const refusal = c.umoci.refuses;
      const err = await unpack.then(
        () => fail(`umoci unpacked ${c.file}, expected it to refuse (${refusal})`),
        (e: unknown) => e,
      );
      if (!(err instanceof CommandFailedError) || !refusal.test(err.stderr)) throw err;
    } else {
      await unpack;
      for (const f of c.umoci.files) await stat(join(bundle, 'rootfs', f)).catch(() => fail(`umoci's rootfs has no ${f}`));
      for (const f of c.umoci.absent ?? []) {
        if (
          await stat(join(bundle, 'rootfs', f)).then(
            () => true,
            () => false,
          )
        )
          fail(`umoci's rootfs has ${f}, which a whiteout removed`);
      }
    }
    return { blobs: present, index };
  });
}

// ---- docker-archive (manifest.json) ------------------------------------------------------------

export interface DockerArchiveImage {
  manifest: ManifestTruth;
  config: BlobTruth;
  repoTags: string[];
}

export interface DockerArchiveCheck {
  file: string;
  storageDir: string;
  skopeoEnv: NodeJS.ProcessEnv;
  images: DockerArchiveImage[];
  /** Layers as the registry serves them (docker, tarball), or decompressed (legacy). */
  layers: 'compressed' | 'uncompressed';
}

interface ManifestJsonEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

/**
 * A docker-archive whose layers may be compressed: manifest.json lists each image with its tags,
 * its config byte-exact and its layers, each byte-exact the registry's blob (or, uncompressed,
 * hashing to the config's diff_id) and listing under GNU tar like the registry's; skopeo reads
 * each image's config and copies it (re-verifying every layer against its diff_id).
 */
export async function validateDockerArchiveLayers(c: DockerArchiveCheck): Promise<ManifestJsonEntry[]> {
  return withTempDir('longshore-docker-', async (dir) => {
    const root = join(dir, 'archive');
    await run('mkdir', ['-p', root]);
    await run('tar', ['-xf', c.file, '-C', root]);
    const entries = JSON.parse(await readFile(join(root, 'manifest.json'), 'utf8')) as ManifestJsonEntry[];
    if (entries.length !== c.images.length) fail(`manifest.json has ${entries.length} entries, expected ${c.images.length}`);
    const opts = { env: c.skopeoEnv };
    for (const [n, image] of c.images.entries()) {
      const entry = entries[n]!;
      if (JSON.stringify(entry.RepoTags) !== JSON.stringify(image.repoTags))
        fail(`RepoTags ${JSON.stringify(entry.RepoTags)} != ${JSON.stringify(image.repoTags)}`);
      if ((await readFile(join(root, entry.Config), 'utf8')) !== image.config.raw)
        fail(`config ${entry.Config} differs from the registry's`);
      const manifest = JSON.parse(image.manifest.raw) as Manifest;
      const diffIds = (JSON.parse(image.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
      if (entry.Layers.length !== manifest.layers.length)
        fail(`${entry.Layers.length} layers in the archive, ${manifest.layers.length} in the registry`);
      for (const [i, layer] of manifest.layers.entries()) {
        const path = join(root, entry.Layers[i]!);
        const bytes = await readFile(path);
        const expected = c.layers === 'compressed' ? layer.digest : diffIds[i]!;
        if (sha256(bytes) !== expected) fail(`layer ${i + 1} (${entry.Layers[i]}) hashes to ${sha256(bytes)}, expected ${expected}`);
        const ours = await layerListing(path, c.layers === 'compressed' ? layer.mediaType : 'application/vnd.oci.image.layer.v1.tar');
        const theirs = await layerListing(storedBlobPath(c.storageDir, layer.digest), layer.mediaType);
        if (JSON.stringify(ours) !== JSON.stringify(theirs))
          fail(`layer ${i + 1} lists differently:\n${ours.join('\n')}\n---\n${theirs.join('\n')}`);
      }
      const source = `docker-archive:${c.file}:@${n}`;
      const config = (await run('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', source], opts)).toString('utf8');
      if (config !== image.config.raw) fail(`skopeo reads a different config for image ${n}:\n${config.slice(0, 300)}`);
      await run('skopeo', ['--insecure-policy', 'copy', '--quiet', source, `dir:${join(dir, `copied-${n}`)}`], opts);
    }
    return entries;
  });
}

// ---- podman load -------------------------------------------------------------------------------

export interface PodmanImage {
  Id: string;
  Names?: string[];
  Digest: string;
  RepoDigests?: string[];
}

/**
 * `podman load -i FILE` into throw-away storage (vfs under a temp dir; libpod's tmp and network
 * config there too, no event log), so parallel runs never collide and nothing is left behind
 * except c/image's shared blob-info cache, which skopeo as root updates as well.
 */
export async function podmanLoad(file: string): Promise<{ output: string; images: PodmanImage[] }> {
  return withTempDir('longshore-podman-', async (dir) => {
    for (const d of ['root', 'run', 'tmp', 'net']) await run('mkdir', ['-p', join(dir, d)]);
    const env = { ...process.env, TMPDIR: join(dir, 'tmp') };
    const podman = (args: string[]) =>
      runText(
        'podman',
        [
          '--root',
          join(dir, 'root'),
          '--runroot',
          join(dir, 'run'),
          '--tmpdir',
          join(dir, 'tmp'),
          '--network-config-dir',
          join(dir, 'net'),
          '--events-backend',
          'none',
          '--storage-driver',
          'vfs',
          ...args,
        ],
        { env },
      );
    const output = await podman(['load', '-q', '-i', file]);
    const images = JSON.parse(await podman(['images', '--format', 'json'])) as PodmanImage[];
    return { output, images };
  });
}
