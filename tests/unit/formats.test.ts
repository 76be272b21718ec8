// The formats on synthetic images (no registry): exact layouts, naming, foreign layers, errors, and
// a 9 GiB layer through every format's plan, judged by GNU tar on a sparse file (no 9 GiB of data).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';
import { MediaType } from '../../src/core/image/media-types.ts';
import type { Descriptor, Image, ImageIndex, Layer } from '../../src/core/image/model.ts';
import type { RemoteSource } from '../../src/core/image/remote.ts';
import { parsePlatform, type Platform } from '../../src/core/image/platform.ts';
import { pullIndex } from '../../src/core/pull.ts';
import type { PullEvent } from '../../src/core/progress.ts';
import { parseReference } from '../../src/core/reference.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { isContentRef } from '../../src/core/tar/writer.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formatById, formats, type ArchivePlan, type Format, type SinkImage } from '../../src/core/formats/index.ts';
import { qualifiedTag, repoTag, tagFor } from '../../src/core/formats/types.ts';
import { storedRef } from '../../src/core/formats/entries.ts';

const enc = new TextEncoder();
const digestOf = (bytes: Uint8Array | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const GiB = 2 ** 30;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-formats-unit-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.enqueue(bytes);
      c.close();
    },
  });
}

interface FakeLayer {
  mediaType: string;
  /** Stored (compressed) bytes; or only a size, for plans that are never assembled. */
  bytes?: Uint8Array;
  size?: number;
  diffIdSize?: number;
  urls?: string[];
}

/** A synthetic image; its blobs (and uncompressed stand-ins under the diff_ids) go in `store` when they have bytes. */
async function fakeImage(
  layers: FakeLayer[],
  options: { seed?: string; store?: MemoryBlobStore; sizes?: Map<string, number> } = {},
): Promise<Image> {
  const seed = options.seed ?? 'img';
  const descriptors: Descriptor[] = [];
  const diffIds: string[] = [];
  const built: Layer[] = [];
  const puts: Promise<number>[] = [];
  layers.forEach((l, index) => {
    const size = l.bytes?.byteLength ?? l.size ?? 0;
    const digest = l.bytes ? digestOf(l.bytes) : digestOf(`${seed} layer ${index}`);
    const diffId = digestOf(`${seed} diff ${index}`);
    const d: Descriptor = { mediaType: l.mediaType, digest, size, ...(l.urls ? { urls: l.urls } : {}) };
    descriptors.push(d);
    diffIds.push(diffId);
    options.sizes?.set(digest, size).set(diffId, l.diffIdSize ?? size);
    if (l.bytes && options.store) {
      puts.push(options.store.put(digest, streamOf(l.bytes)), options.store.put(diffId, streamOf(l.bytes)));
    }
    built.push({ descriptor: d, index, diffId, open: async () => streamOf(l.bytes ?? new Uint8Array(0)) });
  });
  await Promise.all(puts);
  const configBytes = enc.encode(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds }, history: [] }),
  );
  const config: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.byteLength };
  const manifestBytes = enc.encode(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: descriptors }));
  const digest = digestOf(manifestBytes);
  const reference = parseReference(`example.com/${seed}@${digest}`);
  return {
    kind: 'image',
    reference,
    mediaType: MediaType.OciManifest,
    digest,
    manifestBytes,
    manifest: JSON.parse(new TextDecoder().decode(manifestBytes)) as Image['manifest'],
    configBytes,
    config: JSON.parse(new TextDecoder().decode(configBytes)) as Image['config'],
    layers: built,
    descriptor: { mediaType: MediaType.OciManifest, digest, size: manifestBytes.byteLength },
  };
}

function sizesCtx(sizes: Map<string, number>) {
  return { size: async (k: string) => sizes.get(k)! };
}

/** Header bytes written, refs left as holes: a sparse file GNU tar can list without the content existing. */
async function sparseArchive(plan: ArchivePlan, file: string): Promise<void> {
  const handle = await open(file, 'w');
  try {
    let offset = 0;
    for (const part of plan.parts) {
      if (isContentRef(part)) offset += part.size;
      else {
        await handle.write(part, 0, part.byteLength, offset);
        offset += part.byteLength;
      }
    }
    expect(offset).toBe(plan.size);
    await handle.truncate(plan.size);
  } finally {
    await handle.close();
  }
}

async function assembled(format: Format, images: SinkImage[], store: MemoryBlobStore): Promise<string> {
  const plan = await format.plan(images, { size: async (k) => (await store.size(k))! });
  const file = join(dir, `${format.id}-${Math.random().toString(36).slice(2)}.tar`);
  await writeFile(file, new Uint8Array(await new Response(assembleStream(plan, store)).arrayBuffer()));
  return file;
}

const tar = (...args: string[]) => execFileSync('tar', args, { encoding: 'utf8' });

describe('naming', () => {
  const d = `sha256:${'a'.repeat(64)}`;
  const other = `sha256:${'b'.repeat(64)}`;
  it('keeps the tag asked for; Docker Hub names in Docker’s short form, fully qualified for containerd', () => {
    const ref = parseReference('alpine');
    expect([tagFor(ref, d), repoTag(ref, d), qualifiedTag(ref, d)]).toEqual(['latest', 'alpine:latest', 'docker.io/library/alpine:latest']);
    const gh = parseReference(`ghcr.io/o/r:v1@${d}`);
    expect([tagFor(gh, other), repoTag(gh, other), qualifiedTag(gh, other)]).toEqual(['v1', 'ghcr.io/o/r:v1', 'ghcr.io/o/r:v1']);
  });

  it('a digest-only pull is tagged digest-<hex of the digest asked for>, never sha256-<hex> (the referrers tag schema)', () => {
    const ref = parseReference(`localhost:5000/x/y@${d}`);
    expect(repoTag(ref, other)).toBe(`localhost:5000/x/y:digest-${'a'.repeat(64)}`);
    expect(qualifiedTag(ref, other)).toBe(`localhost:5000/x/y:digest-${'a'.repeat(64)}`);
    expect(tagFor(ref, other)).toMatch(/^\w[\w.-]{0,127}$/);
  });
});

describe('exact layouts', () => {
  it('docker: Docker 25 save layout, index.json (platform from the config, as moby writes it) and manifest.json to the byte', async () => {
    const store = new MemoryBlobStore();
    const image = await fakeImage(
      [
        { mediaType: MediaType.OciLayerGzip, bytes: enc.encode('layer-a') },
        { mediaType: MediaType.OciLayerZstd, bytes: enc.encode('layer-b') },
      ],
      { store },
    );
    const reference = parseReference('alpine:3.20');
    const file = await assembled(formatById('docker')!, [{ image, reference }], store);
    const hex = (s: string) => s.slice(7);
    const [la, lb] = image.layers.map((l) => l.descriptor.digest);
    expect(tar('-tf', file).trim().split('\n')).toEqual([
      'blobs/',
      'blobs/sha256/',
      ...[image.digest, image.manifest.config.digest, la!, lb!].map((x) => `blobs/sha256/${hex(x)}`).sort(),
      'index.json',
      'manifest.json',
      'oci-layout',
      'repositories',
    ]);
    expect(tar('-xOf', file, 'oci-layout')).toBe('{"imageLayoutVersion":"1.0.0"}');
    expect(tar('-xOf', file, 'index.json')).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"${image.digest}","size":${image.manifestBytes.byteLength},"annotations":{"io.containerd.image.name":"docker.io/library/alpine:3.20","org.opencontainers.image.ref.name":"3.20"},"platform":{"architecture":"amd64","os":"linux"}}]}`,
    );
    expect(tar('-xOf', file, 'manifest.json')).toBe(
      `[{"Config":"blobs/sha256/${hex(image.manifest.config.digest)}","RepoTags":["alpine:3.20"],"Layers":["blobs/sha256/${hex(la!)}","blobs/sha256/${hex(lb!)}"]}]`,
    );
    expect(tar('-xOf', file, 'repositories')).toBe(`{"alpine":{"3.20":"${hex(lb!)}"}}`);
    expect(tar('-xOf', file, `blobs/sha256/${hex(lb!)}`)).toBe('layer-b');
  });

  it('tarball: crane order and names; the extension follows the media type', async () => {
    const store = new MemoryBlobStore();
    const image = await fakeImage(
      [
        { mediaType: MediaType.DockerLayerGzip, bytes: enc.encode('g') },
        { mediaType: MediaType.OciLayerZstd, bytes: enc.encode('z') },
        { mediaType: MediaType.OciLayer, bytes: enc.encode('t') },
      ],
      { store },
    );
    const file = await assembled(formatById('tarball')!, [{ image, reference: parseReference('example.com/app:v2') }], store);
    const layers = image.layers.map((l) => l.descriptor.digest.slice(7));
    expect(tar('-tf', file).trim().split('\n')).toEqual([
      image.manifest.config.digest,
      `${layers[0]}.tar.gz`,
      `${layers[1]}.tar.zst`,
      `${layers[2]}.tar`,
      'manifest.json',
    ]);
    expect(tar('-xOf', file, 'manifest.json')).toBe(
      `[{"Config":"${image.manifest.config.digest}","RepoTags":["example.com/app:v2"],"Layers":["${layers[0]}.tar.gz","${layers[1]}.tar.zst","${layers[2]}.tar"]}]`,
    );
  });

  it('oci: one descriptor, oci-layout, index.json and the blobs, nothing else', async () => {
    const store = new MemoryBlobStore();
    const image = await fakeImage([{ mediaType: MediaType.OciLayerGzip, bytes: enc.encode('x') }], { store });
    const file = await assembled(formatById('oci')!, [{ image, reference: parseReference('example.com/app:v2') }], store);
    expect(
      tar('-tf', file)
        .trim()
        .split('\n')
        .filter((n) => !n.startsWith('blobs/')),
    ).toEqual(['index.json', 'oci-layout']);
    expect(JSON.parse(tar('-xOf', file, 'index.json'))).toEqual({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        {
          mediaType: MediaType.OciManifest,
          digest: image.digest,
          size: image.manifestBytes.byteLength,
          annotations: { 'io.containerd.image.name': 'example.com/app:v2', 'org.opencontainers.image.ref.name': 'v2' },
        },
      ],
    });
  });

  it('the same image under two tags: one manifest.json entry with both tags (docker, tarball); one index.json entry per tag (docker)', async () => {
    const store = new MemoryBlobStore();
    const image = await fakeImage([{ mediaType: MediaType.OciLayerGzip, bytes: enc.encode('x') }], { store });
    const images = [
      { image, reference: parseReference('example.com/app:a') },
      { image, reference: parseReference('example.com/app:b') },
    ];
    for (const id of ['docker', 'tarball']) {
      const file = await assembled(formatById(id)!, images, store);
      const manifest = JSON.parse(tar('-xOf', file, 'manifest.json')) as { RepoTags: string[] }[];
      expect(manifest.map((m) => m.RepoTags)).toEqual([['example.com/app:a', 'example.com/app:b']]);
      if (id === 'docker') {
        const index = JSON.parse(tar('-xOf', file, 'index.json')) as { manifests: { annotations: Record<string, string> }[] };
        expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name'])).toEqual(['a', 'b']);
      }
    }
  });
});

describe('foreign (non-distributable) layers', () => {
  // Pull fetches their bytes from the registry like any layer (registries commonly mirror them);
  // every format writes those bytes, and the manifest.json formats also keep the original descriptor
  // (with its urls) in LayerSources, keyed by diff_id, as Docker and crane do.
  it.each(['docker', 'tarball', 'legacy'])('%s lists them in LayerSources and includes the bytes', async (id) => {
    const store = new MemoryBlobStore();
    const image = await fakeImage(
      [
        { mediaType: MediaType.DockerForeignLayer, bytes: enc.encode('windows base'), urls: ['https://mcr.example/base.tar.gz'] },
        { mediaType: MediaType.DockerLayerGzip, bytes: enc.encode('app') },
      ],
      { store },
    );
    const file = await assembled(formatById(id)!, [{ image, reference: parseReference('example.com/win:1') }], store);
    const [entry] = JSON.parse(tar('-xOf', file, 'manifest.json')) as { Layers: string[]; LayerSources: Record<string, Descriptor> }[];
    expect(entry!.LayerSources).toEqual({ [image.layers[0]!.diffId!]: image.layers[0]!.descriptor });
    expect(tar('-xOf', file, entry!.Layers[0]!)).toBe('windows base');
  });

  it('oci keeps them in the layout, descriptor (urls included) untouched in the manifest', async () => {
    const store = new MemoryBlobStore();
    const image = await fakeImage(
      [{ mediaType: MediaType.OciLayerNondistributableGzip, bytes: enc.encode('nd'), urls: ['https://example/nd'] }],
      { store },
    );
    const file = await assembled(formatById('oci')!, [{ image, reference: parseReference('example.com/nd:1') }], store);
    expect(tar('-xOf', file, `blobs/sha256/${image.layers[0]!.descriptor.digest.slice(7)}`)).toBe('nd');
    expect(tar('-xOf', file, `blobs/sha256/${image.digest.slice(7)}`)).toBe(new TextDecoder().decode(image.manifestBytes));
  });
});

describe('a 9 GiB layer (PAX size record) through every format', () => {
  it.each(formats.map((f) => f.id))('%s: GNU tar lists the 9 GiB entry and every entry after it', async (id) => {
    const format = formatById(id)!;
    const sizes = new Map<string, number>();
    const big = 9 * GiB;
    const image = await fakeImage(
      [
        { mediaType: MediaType.OciLayerGzip, size: big, diffIdSize: big },
        { mediaType: MediaType.OciLayerGzip, size: 1234, diffIdSize: 4096 },
      ],
      { sizes, seed: 'big' },
    );
    const plan = await format.plan([{ image, reference: parseReference('example.com/big:1') }], sizesCtx(sizes));
    const ref = plan.parts.find((p) => isContentRef(p) && p.size === big);
    expect(ref).toBeDefined();
    // The header right before the 9 GiB content carries its size in a PAX record (ustar's 11 octal digits stop below 8 GiB).
    const before = plan.parts[plan.parts.indexOf(ref!) - 1] as Uint8Array;
    expect(new TextDecoder().decode(before.subarray(Math.max(0, before.byteLength - 3 * 512)))).toContain(`size=${big}\n`);
    const file = join(dir, `big-${id}.tar`);
    await sparseArchive(plan, file);
    const listing = tar('--utc', '-tvf', file).trim().split('\n');
    expect(listing.some((l) => l.includes(` ${big} 1970-01-01 00:00 `))).toBe(true);
    expect(listing.at(-1)).toMatch(id === 'tarball' ? /manifest\.json$/ : id === 'legacy' ? /repositories$/ : /repositories$|oci-layout$/);
    await rm(file);
  });
});

describe('errors', () => {
  it('every format refuses an empty list; the single-image format refuses two', async () => {
    for (const f of formats) await expect(f.plan([], { size: async () => 0 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    const sizes = new Map<string, number>();
    const a = {
      image: await fakeImage([{ mediaType: MediaType.OciLayerGzip, size: 1 }], { sizes, seed: 'a' }),
      reference: parseReference('example.com/a:1'),
    };
    const b = {
      image: await fakeImage([{ mediaType: MediaType.OciLayerGzip, size: 1 }], { sizes, seed: 'b' }),
      reference: parseReference('example.com/b:1'),
    };
    for (const f of formats.filter((x) => !x.multiImage)) {
      await expect(f.plan([a, b], sizesCtx(sizes))).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        message: `The ${f.id} format holds one image; 2 were given.`,
      });
    }
    for (const f of formats.filter((x) => x.multiImage)) await expect(f.plan([a, b], sizesCtx(sizes))).resolves.toBeDefined();
  });

  it('a blob missing from the store, or of another size than its descriptor, fails while planning', async () => {
    await expect(storedRef({ size: async () => undefined as unknown as number }, 'sha256:x', 5, 'layer 1')).rejects.toMatchObject({
      code: ErrorCode.Store,
      message: 'The layer 1 (sha256:x) is not in the store.',
    });
    await expect(storedRef({ size: async () => 4 }, 'sha256:x', 5, 'layer 1')).rejects.toMatchObject({ code: ErrorCode.Store });
    const sizes = new Map<string, number>();
    const image = await fakeImage([{ mediaType: MediaType.OciLayerGzip, size: 10 }], { sizes });
    sizes.set(image.layers[0]!.descriptor.digest, 11);
    for (const f of formats.filter((x) => !x.needsUncompressed)) {
      const err = await f.plan([{ image, reference: parseReference('example.com/a:1') }], sizesCtx(sizes)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LongshoreError);
      expect((err as LongshoreError).code).toBe(ErrorCode.Store);
    }
  });
});

/** A synthetic index over `children` (each with a platform), resolving them from memory. */
function fakeIndex(children: [Image | ImageIndex, Platform | undefined][], seed: string, sizeSkew = 0): ImageIndex {
  const manifests: Descriptor[] = children.map(([c, platform], i) => ({
    mediaType: c.mediaType,
    digest: c.digest,
    size: c.manifestBytes.byteLength + (i === 0 ? sizeSkew : 0),
    ...(platform ? { platform } : {}),
  }));
  const manifestBytes = enc.encode(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
  const digest = digestOf(manifestBytes);
  return {
    kind: 'index',
    reference: parseReference(`example.com/${seed}@${digest}`),
    mediaType: MediaType.OciIndex,
    digest,
    manifestBytes,
    manifest: { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests },
    platforms: () => [],
    image: () => Promise.reject(new Error('not used')),
    child: async (d) => children.find(([c]) => c.digest === d.digest)![0],
  };
}

describe('pullIndex and the oci format over a nested index', () => {
  async function tree(sizeSkew = 0) {
    const shared = { mediaType: MediaType.OciLayerGzip, bytes: enc.encode('shared base') };
    const a = await fakeImage([shared, { mediaType: MediaType.OciLayerGzip, bytes: enc.encode('amd64 app') }], { seed: 'amd64' });
    const b = await fakeImage([shared, { mediaType: MediaType.OciLayerGzip, bytes: enc.encode('arm64 app') }], { seed: 'arm64' });
    const c = await fakeImage([{ mediaType: MediaType.OciLayerZstd, bytes: enc.encode('arm app') }], { seed: 'arm' });
    const nested = fakeIndex(
      [
        [b, parsePlatform('linux/arm64')],
        [c, parsePlatform('linux/arm/v7')],
      ],
      'nested',
    );
    const root = fakeIndex(
      [
        [a, parsePlatform('linux/amd64')],
        [nested, undefined],
      ],
      'root',
      sizeSkew,
    );
    const source = { resolve: async () => root } as unknown as RemoteSource;
    return { a, b, c, nested, root, source };
  }

  it('walks nested indexes, picks the platform through them, fetches every distinct layer once under one plan', async () => {
    const { a, b, c, nested, root, source } = await tree();
    const store = new MemoryBlobStore();
    const events: PullEvent[] = [];
    const result = await pullIndex(source, root.reference, {
      store,
      platform: parsePlatform('linux/arm64'),
      onProgress: (e) => events.push(e),
    });
    expect(result.image.digest).toBe(b.digest);
    expect(result.index!.children.map((x) => x.digest)).toEqual([a.digest, b.digest, c.digest]);
    expect(result.index!.nested.map((x) => x.digest)).toEqual([nested.digest]);
    const plan = events.find((e) => e.type === 'plan');
    const distinct = new Set([a, b, c].flatMap((x) => x.layers.map((l) => l.descriptor.digest)));
    expect(plan?.type === 'plan' && plan.layers.length).toBe(distinct.size);
    expect(store.keys().sort()).toEqual([...distinct].sort());

    const file = await assembled(formatById('oci')!, [{ ...result, reference: parseReference('example.com/app:1') }], store);
    const blobs = tar('-tf', file)
      .trim()
      .split('\n')
      .filter((n) => /^blobs\/sha256\/./.test(n))
      .map((n) => `sha256:${n.slice(13)}`)
      .sort();
    const expected = new Set([root.digest, nested.digest, ...[a, b, c].flatMap((x) => [x.digest, x.manifest.config.digest]), ...distinct]);
    expect(blobs).toEqual([...expected].sort());
    expect(tar('-xOf', file, `blobs/sha256/${nested.digest.slice(7)}`)).toBe(new TextDecoder().decode(nested.manifestBytes));
    expect((JSON.parse(tar('-xOf', file, 'index.json')) as { manifests: Descriptor[] }).manifests.map((m) => m.digest)).toEqual([
      root.digest,
    ]);
  });

  it('no child for the platform: the first runnable child', async () => {
    const { a, root, source } = await tree();
    const result = await pullIndex(source, root.reference, { store: new MemoryBlobStore(), platform: parsePlatform('linux/s390x') });
    expect(result.image.digest).toBe(a.digest);
  });

  it('a child whose size differs from its index descriptor fails before any layer is fetched', async () => {
    const { root, source } = await tree(1);
    const store = new MemoryBlobStore();
    await expect(pullIndex(source, root.reference, { store })).rejects.toMatchObject({ code: ErrorCode.SizeMismatch });
    expect(store.keys()).toEqual([]);
  });
});
