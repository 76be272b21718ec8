// The standard fixture images: built once per test run with umoci/GNU tar, pushed with skopeo to the anonymous
// registry (all registries share its storage), and described by what skopeo reads back ("truth").
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import { run } from './command.ts';
import {
  MediaType,
  OciLayout,
  writeLayerTar,
  sha256Digest,
  skopeoCopy,
  skopeoInspectConfigRaw,
  skopeoInspectRaw,
  type CopyOptions,
  type FileSpec,
  type ImageSpec,
  type LayerSpec,
  type Platform,
} from './images.ts';

export type FixtureName = 'v2s2' | 'oci' | 'ociV1' | 'multi' | 'list' | 'private' | 'plain' | 'zstd' | 'many' | 'fs';

/** Layers in the `many` fixture: past 30, where loaders that open every layer at once would hit limits. */
export const MANY_LAYERS = 32;

export const FIXTURES: Record<FixtureName, { repository: string; tag: string; description: string }> = {
  v2s2: {
    repository: 'test/v2s2',
    tag: 'latest',
    description: 'Docker schema 2, 3 gzip layers (dirs, symlink, hardlink, long + UTF-8 names, 256 KiB incompressible file, whiteouts)',
  },
  oci: { repository: 'test/oci', tag: 'latest', description: 'OCI manifest, 2 gzip layers; base layer shared with test/oci:v1' },
  ociV1: { repository: 'test/oci', tag: 'v1', description: 'OCI manifest, 2 gzip layers; older app layer' },
  multi: {
    repository: 'test/multi',
    tag: 'latest',
    description: 'OCI index: linux/amd64, linux/arm64/v8, linux/arm/v7 + buildx attestation (unknown/unknown) for amd64',
  },
  list: { repository: 'test/list', tag: 'latest', description: 'Docker manifest list: linux/amd64, linux/arm64/v8, schema 2 children' },
  private: { repository: 'private/secret', tag: 'latest', description: 'small OCI image; anonymous tokens get no access to private/*' },
  plain: {
    repository: 'test/plain',
    tag: 'latest',
    description: 'OCI manifest, 2 uncompressed layers (application/vnd.oci.image.layer.v1.tar)',
  },
  zstd: {
    repository: 'test/zstd',
    tag: 'latest',
    description: 'OCI manifest, 2 zstd layers (application/vnd.oci.image.layer.v1.tar+zstd)',
  },
  many: {
    repository: 'test/many',
    tag: 'latest',
    description: `OCI manifest, ${MANY_LAYERS} gzip layers of one small file each; the last also whites out the first's file`,
  },
  fs: {
    repository: 'test/fs',
    tag: 'latest',
    description:
      'OCI manifest, 4 gzip layers for the inspector: whiteouts, opaque dir, hardlinks, symlinks, devices, setuid, >255-byte path, UTF-8 and markup names, an empty layer; an ENV-only history step',
  },
};

export const FIXTURE_NAMES = Object.keys(FIXTURES) as FixtureName[];

/** Deterministic incompressible bytes (SHA-256 in counter mode), so a blob spans many stream chunks. */
export function pseudoRandomBytes(length: number, seed = 'longshore'): Uint8Array {
  const out = new Uint8Array(length);
  for (let offset = 0, counter = 0; offset < length; counter++) {
    const block = createHash('sha256').update(`${seed}:${counter}`).digest();
    out.set(block.subarray(0, Math.min(block.length, length - offset)), offset);
    offset += block.length;
  }
  return out;
}

/** Content of `/etc/longshore-arch` in every per-platform image: 'amd64\n', 'arm64/v8\n', 'arm/v7\n'. */
export function archFileContent(arch: string, variant?: string): string {
  return `${arch}${variant ? `/${variant}` : ''}\n`;
}

const LONG_NAME = `app/${'deep-directory-name/'.repeat(5)}file-with-a-name-longer-than-one-hundred-bytes.txt`;

export const V2S2_SPEC: ImageSpec = {
  arch: 'amd64',
  os: 'linux',
  config: {
    env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'LONGSHORE_FIXTURE=v2s2'],
    entrypoint: ['/bin/hello'],
    cmd: ['--greeting', 'hi'],
    workingDir: '/app',
    user: '1000:1000',
    labels: { 'org.opencontainers.image.title': 'longshore v2s2 fixture' },
    exposedPorts: ['8080/tcp'],
  },
  layers: [
    {
      files: {
        'etc/os-release': 'NAME="Longshore Test"\nID=longshore\n',
        'etc/longshore-arch': archFileContent('amd64'),
        'bin/hello': { content: '#!/bin/sh\necho hello\n', mode: 0o755 },
        'var/empty': { type: 'dir', mode: 0o700 },
        'usr/share/blob.bin': pseudoRandomBytes(256 * 1024, 'v2s2'),
      },
    },
    {
      files: {
        'app/config.json': '{"release":1}\n',
        'app/releases/1/run.sh': { content: '#!/bin/sh\nexec /bin/hello\n', mode: 0o755 },
        'app/releases/1/run-link.sh': { type: 'hardlink', target: 'app/releases/1/run.sh' },
        'app/current': { type: 'symlink', target: '/app/releases/1' },
        [LONG_NAME]: 'long name\n',
        'app/ünïcødé.txt': 'utf-8 name\n',
      },
    },
    {
      files: {
        'usr/share/.wh.blob.bin': '',
        'app/releases/.wh..wh..opq': '',
        'app/releases/2/run.sh': { content: '#!/bin/sh\nexec /bin/hello --v2\n', mode: 0o755 },
        'app/current': { type: 'symlink', target: '/app/releases/2' },
        'etc/motd': 'layer three\n',
      },
    },
  ],
};

const OCI_BASE_LAYER: LayerSpec = {
  files: {
    'etc/os-release': 'NAME="Longshore Test"\nID=longshore\n',
    'etc/longshore-arch': archFileContent('amd64'),
    'bin/tool': { content: 'tool\n', mode: 0o755 },
  },
};

export function ociSpec(release: 1 | 2): ImageSpec {
  return {
    config: { env: [`LONGSHORE_RELEASE=${release}`], cmd: ['/bin/tool'], labels: { 'org.opencontainers.image.version': `${release}` } },
    layers: [OCI_BASE_LAYER, { files: { 'app/version.txt': `release ${release}\n` } }],
  };
}

export function archSpec(arch: string, variant?: string): ImageSpec {
  return {
    arch,
    ...(variant ? { variant } : {}),
    config: { env: [`LONGSHORE_ARCH=${archFileContent(arch, variant).trim()}`], cmd: ['/usr/bin/tool'] },
    layers: [
      { files: { 'etc/os-release': 'NAME="Longshore Test"\nID=longshore\n', 'etc/longshore-arch': archFileContent(arch, variant) } },
      { files: { 'usr/bin/tool': { content: `tool built for ${archFileContent(arch, variant).trim()}\n`, mode: 0o755 } } },
    ],
  };
}

export const MULTI_PLATFORMS: Platform[] = [
  { architecture: 'amd64', os: 'linux' },
  { architecture: 'arm64', os: 'linux', variant: 'v8' },
  { architecture: 'arm', os: 'linux', variant: 'v7' },
];
export const LIST_PLATFORMS: Platform[] = [
  { architecture: 'amd64', os: 'linux' },
  { architecture: 'arm64', os: 'linux', variant: 'v8' },
];

export const PRIVATE_SPEC: ImageSpec = { config: { cmd: ['/secret.txt'] }, layers: [{ files: { 'secret.txt': 'top secret\n' } }] };

export function layeredSpec(compression: 'none' | 'zstd'): ImageSpec {
  return {
    config: { env: [`LONGSHORE_COMPRESSION=${compression}`] },
    layers: [
      {
        compression,
        files: { 'etc/longshore-arch': archFileContent('amd64'), [`data/${compression}-1.txt`]: `${compression} layer 1\n`.repeat(100) },
      },
      {
        compression,
        files: {
          [`data/${compression}-2.txt`]: `${compression} layer 2\n`.repeat(100),
          'data/random.bin': pseudoRandomBytes(16 * 1024, compression),
        },
      },
    ],
  };
}

/** `many`: layer i holds /layers/NN.txt; the last layer also deletes /layers/00.txt (a whiteout). */
export function manyLayersSpec(count = MANY_LAYERS): ImageSpec {
  return {
    config: { env: [`LONGSHORE_LAYERS=${count}`], cmd: ['/bin/sh'] },
    layers: Array.from({ length: count }, (_, i): LayerSpec => {
      const name = String(i).padStart(2, '0');
      const files: Record<string, FileSpec> = { [`layers/${name}.txt`]: `layer ${name}\n` };
      if (i === 0) files['etc/longshore-arch'] = archFileContent('amd64');
      if (i === count - 1) files['layers/.wh.00.txt'] = '';
      return { files };
    }),
  };
}

// ---- truth -----------------------------------------------------------------------------------------------

export interface BlobTruth {
  /** The bytes as UTF-8 text (manifests and configs are JSON). */
  raw: string;
  /** sha256 of the bytes, computed here with node:crypto. */
  digest: string;
  size: number;
}

export interface ManifestTruth extends BlobTruth {
  /** The `mediaType` field of the JSON. */
  mediaType: string;
}

export interface FixtureChildTruth {
  platform: Platform;
  annotations?: Record<string, string>;
  manifest: ManifestTruth;
  config: BlobTruth;
}

export interface FixtureTruth {
  name: FixtureName;
  repository: string;
  tag: string;
  /** 'repository:tag', to append to a registry host. */
  path: string;
  /** `skopeo inspect --raw` */
  manifest: ManifestTruth;
  /** `skopeo inspect --config --raw` (for an index: the linux/amd64 child's config). */
  config: BlobTruth;
  /** For an index or list: every entry, in order (the attestation too), read by digest. */
  children?: FixtureChildTruth[];
}

export type FixtureTruths = Record<FixtureName, FixtureTruth>;

function blobTruth(bytes: Buffer): BlobTruth {
  return { raw: bytes.toString('utf8'), digest: sha256Digest(bytes), size: bytes.byteLength };
}

function manifestTruth(bytes: Buffer): ManifestTruth {
  const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
  return { ...blobTruth(bytes), mediaType: mediaType ?? '' };
}

/** Reads the truth of every fixture from `host` with skopeo (independent of the project's registry client). */
export async function readFixtureTruths(host: string, skopeoEnv: NodeJS.ProcessEnv): Promise<FixtureTruths> {
  const entries = await Promise.all(
    FIXTURE_NAMES.map(async (name): Promise<[FixtureName, FixtureTruth]> => {
      const { repository, tag } = FIXTURES[name];
      const ref = `docker://${host}/${repository}:${tag}`;
      const [rawManifest, rawConfig] = await Promise.all([
        skopeoInspectRaw(ref, { env: skopeoEnv }),
        skopeoInspectConfigRaw(ref, { env: skopeoEnv }),
      ]);
      const manifest = manifestTruth(rawManifest);
      const truth: FixtureTruth = { name, repository, tag, path: `${repository}:${tag}`, manifest, config: blobTruth(rawConfig) };
      if (manifest.mediaType === MediaType.ociIndex || manifest.mediaType === MediaType.dockerManifestList) {
        const list = JSON.parse(manifest.raw) as {
          manifests: Array<{ digest: string; platform: Platform; annotations?: Record<string, string> }>;
        };
        truth.children = await Promise.all(
          list.manifests.map(async (child) => {
            const childRef = `docker://${host}/${repository}@${child.digest}`;
            const [childManifest, childConfig] = await Promise.all([
              skopeoInspectRaw(childRef, { env: skopeoEnv }),
              skopeoInspectConfigRaw(childRef, { env: skopeoEnv }),
            ]);
            return {
              platform: child.platform,
              ...(child.annotations ? { annotations: child.annotations } : {}),
              manifest: manifestTruth(childManifest),
              config: blobTruth(childConfig),
            };
          }),
        );
      }
      return [name, truth];
    }),
  );
  return Object.fromEntries(entries) as FixtureTruths;
}

// ---- build + push ----------------------------------------------------------------------------------------

export interface BuildFixturesOptions {
  /** 'host:port' of a registry that accepts anonymous pushes. */
  host: string;
  /** Scratch directory for the OCI layouts (caller deletes it). */
  workDir: string;
  skopeoEnv: NodeJS.ProcessEnv;
}

/** Builds every fixture (one layout each, in parallel), pushes it to `host` and returns what skopeo reads back. */
export async function buildFixtures(options: BuildFixturesOptions): Promise<FixtureTruths> {
  const { host, workDir, skopeoEnv } = options;
  const dest = (name: FixtureName) => `docker://${host}/${FIXTURES[name].repository}:${FIXTURES[name].tag}`;
  const push = (layout: OciLayout, tag: string, name: FixtureName, copy: Omit<CopyOptions, 'env'>) =>
    skopeoCopy(layout.ref(tag), dest(name), { env: skopeoEnv, ...copy });
  const layout = (name: string) => OciLayout.create(join(workDir, name));

  const single = async (name: FixtureName, spec: ImageSpec, copy: Omit<CopyOptions, 'env'>) => {
    const l = await layout(name);
    await l.addImage('latest', spec);
    await push(l, 'latest', name, copy);
  };

  await Promise.all([
    // skopeo converts the umoci (OCI) image to Docker schema 2 on the way.
    single('v2s2', V2S2_SPEC, { format: 'v2s2' }),
    (async () => {
      const l = await layout('oci');
      await l.addImage('v1', ociSpec(1));
      await l.addImage('latest', ociSpec(2));
      await Promise.all([push(l, 'v1', 'ociV1', { preserveDigests: true }), push(l, 'latest', 'oci', { preserveDigests: true })]);
    })(),
    (async () => {
      const l = await layout('multi');
      const images = [];
      for (const p of MULTI_PLATFORMS)
        images.push(await l.addImage(`${p.architecture}${p.variant ?? ''}`, archSpec(p.architecture, p.variant)));
      const attestation = await l.addAttestation(images[0]!.descriptor);
      await l.addIndex('latest', [...images.map((i) => i.descriptor), attestation]);
      await push(l, 'latest', 'multi', { all: true, preserveDigests: true });
    })(),
    (async () => {
      const l = await layout('list');
      const images = [];
      for (const p of LIST_PLATFORMS)
        images.push(await l.addImage(`${p.architecture}${p.variant ?? ''}`, archSpec(p.architecture, p.variant)));
      await l.addIndex(
        'latest',
        images.map((i) => i.descriptor),
      );
      // --all --format v2s2 turns the OCI index into a Docker manifest list of schema 2 manifests.
      await push(l, 'latest', 'list', { all: true, format: 'v2s2' });
    })(),
    single('private', PRIVATE_SPEC, { preserveDigests: true }),
    single('plain', layeredSpec('none'), { preserveDigests: true }),
    single('zstd', layeredSpec('zstd'), { preserveDigests: true }),
    single('many', manyLayersSpec(), { preserveDigests: true }),
    buildFsFixture(join(workDir, 'fs')).then((ref) => skopeoCopy(ref, dest('fs'), { env: skopeoEnv, preserveDigests: true })),
  ]);
  return readFixtureTruths(host, skopeoEnv);
}

// ---- test/fs: the inspector's fixture ----------------------------------------------------------------------

/** A path of more than 255 bytes (ustar holds 255 at most: PAX carries it). */
export const FS_LONG_PATH = `deep/${Array.from({ length: 6 }, (_, i) => `level-${i}-${'x'.repeat(40)}`).join('/')}/file-at-the-end-of-a-path-longer-than-255-bytes.txt`;

/** Device nodes GNU tar appends to layer 1 (made with mknod as root): [path, type, major, minor, mode]. */
export const FS_DEVICES: Array<[string, 'c' | 'b' | 'p', number, number, number]> = [
  ['dev/null', 'c', 1, 3, 0o666],
  ['dev/loop0', 'b', 7, 0, 0o660],
  ['dev/fifo', 'p', 0, 0, 0o644],
];

/** The layers of test/fs, bottom first. Layer 1 also gets FS_DEVICES; an ENV-only step sits between layers 1 and 2. */
export const FS_LAYERS: Record<string, FileSpec>[] = [
  {
    'bin/su-like': { content: '#!/bin/sh\necho root\n', mode: 0o4755 },
    'bin/sgid-tool': { content: 'sgid\n', mode: 0o2755 },
    'bin/suid-noexec': { content: 'S\n', mode: 0o4644 },
    tmp: { type: 'dir', mode: 0o1777 },
    'srv/sticky-noexec': { type: 'dir', mode: 0o1776 },
    'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
    'etc/hosts': '127.0.0.1 localhost\n',
    'etc/remove-me': 'to be deleted\n',
    'opt/old/a.txt': 'a\n',
    'opt/old/sub/b.txt': 'b\n',
    'var/lib/opaque/lower.txt': 'lower\n',
    'var/lib/opaque/lowerdir/x': 'x\n',
    'var/cache/app/data.bin': pseudoRandomBytes(4096, 'fs-cache'),
    'data/hard-a': 'original content of hard-a\n',
    'data/hard-b': { type: 'hardlink', target: 'data/hard-a' },
    'data/keep-src': 'kept source\n',
    'data/keep-z-link': { type: 'hardlink', target: 'data/keep-src' },
    'links/abs': { type: 'symlink', target: '/etc/passwd' },
    'links/rel': { type: 'symlink', target: '../etc/hosts' },
    'links/dangling': { type: 'symlink', target: '/does/not/exist' },
    [FS_LONG_PATH]: 'long path\n',
    'utf8/ünïcødé-日本語.txt': 'utf-8 name\n',
    'utf8/emoji-🐳.txt': 'whale\n',
    'weird/<img src=x onerror=alert(1)>.txt': 'markup name\n',
    'weird/tab\there.txt': 'tab in name\n',
  },
  {
    'etc/.wh.remove-me': '',
    'opt/.wh.old': '',
    'var/lib/opaque/.wh..wh..opq': '',
    'var/lib/opaque/upper.txt': 'upper\n',
    'etc/hosts': '127.0.0.1 localhost\n::1 localhost\n',
    'data/hard-a': 'replaced hard-a in layer 2\n',
    'var/cache': { type: 'symlink', target: '/tmp' },
    'etc/motd': 'layer two\n',
  },
  {},
  {
    'etc/.wh.hosts': '',
    'etc/hosts': 'hosts from layer 4\n',
    'etc/remove-me/now-a-dir.txt': 'was a file, deleted, now a directory\n',
    'opt/old/fresh.txt': 'recreated after the delete\n',
    'usr/bin/tool': { content: 'tool\n', mode: 0o755 },
  },
];

const FS_CREATED = '2024-01-01T00:00:00Z';

/**
 * Builds test/fs with GNU tar and umoci alone (the shared builder has no device nodes): layer tars from
 * writeLayerTar, device nodes appended by GNU tar, `umoci raw add-layer` each, an ENV-only `umoci config`
 * step between layers 1 and 2 (an empty_layer history entry), then the image config. Returns skopeo's ref.
 */
export async function buildFsFixture(dir: string): Promise<string> {
  const work = `${dir}.work`;
  await rm(dir, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const image = `${dir}:latest`;
  await run('umoci', ['init', '--layout', dir]);
  await run('umoci', ['new', '--image', image]);
  for (const [i, files] of FS_LAYERS.entries()) {
    const tarPath = join(work, `layer-${i}.tar`);
    await writeLayerTar(files, join(work, `layer-${i}.stage`), tarPath);
    if (i === 0) {
      const stage = join(work, 'devices.stage');
      await mkdir(join(stage, 'dev'), { recursive: true });
      for (const [path, type, major, minor, mode] of FS_DEVICES) {
        await run('mknod', ['-m', mode.toString(8), join(stage, path), type, ...(type === 'p' ? [] : [String(major), String(minor)])]);
      }
      await run('tar', [
        '--append',
        `--file=${tarPath}`,
        `--directory=${stage}`,
        '--format=posix',
        '--pax-option=delete=atime,delete=ctime',
        '--sort=name',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--mtime=@1704067200',
        'dev',
      ]);
    }
    if (i === 1) {
      await run('umoci', [
        'config',
        '--image',
        image,
        '--config.env',
        'LONGSHORE_STEP=env-only',
        '--history.created',
        FS_CREATED,
        '--history.created_by',
        'ENV LONGSHORE_STEP=env-only',
      ]);
    }
    await run('umoci', [
      'raw',
      'add-layer',
      '--image',
      image,
      '--history.created',
      FS_CREATED,
      '--history.created_by',
      `longshore fs layer ${i}${i === 2 ? ' (empty)' : ''}`,
      tarPath,
    ]);
  }
  await run('umoci', [
    'config',
    '--image',
    image,
    '--created',
    FS_CREATED,
    '--history.created',
    FS_CREATED,
    '--history.created_by',
    'CONFIG entrypoint, user, ports, labels',
    '--architecture',
    'amd64',
    '--os',
    'linux',
    '--config.env',
    'PATH=/usr/bin:/bin',
    '--config.entrypoint',
    '/bin/su-like',
    '--config.cmd',
    '--help',
    '--config.workingdir',
    '/data',
    '--config.user',
    '0:0',
    '--config.exposedports',
    '8080/tcp',
    '--config.label',
    'org.opencontainers.image.title=longshore fs fixture',
  ]);
  await rm(work, { recursive: true, force: true });
  return `oci:${dir}:latest`;
}
