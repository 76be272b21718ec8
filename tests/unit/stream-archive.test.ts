// The streamed archive (core/formats/stream.ts): for every format, the bytes written in archive
// order while blobs become ready out of order equal the composed archive (planTar + assemble), and
// legacy's unsized entries get their headers once the blob is stored. GNU tar lists the result.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MediaType } from '../../src/core/image/media-types.ts';
import type { Descriptor, Image, Layer } from '../../src/core/image/model.ts';
import { parseReference } from '../../src/core/reference.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { formats } from '../../src/core/formats/index.ts';
import { blobOrder, blobUses, plannedSize, writeEntries, type ArchiveSink } from '../../src/core/formats/stream.ts';
import { isLaterRef } from '../../src/core/formats/types.ts';

const enc = new TextEncoder();
const digestOf = (bytes: Uint8Array | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const streamOf = (bytes: Uint8Array) =>
  new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(bytes);
      c.close();
    },
  });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-stream-unit-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An image of `n` layers with random bytes; compressed and "uncompressed" (longer) stand-ins. */
function image(n: number): { image: Image; blobs: Map<string, Uint8Array> } {
  const blobs = new Map<string, Uint8Array>();
  const layers: Layer[] = [];
  const descriptors: Descriptor[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = new Uint8Array(1000 + i * 777).map(() => Math.floor(Math.random() * 256));
    const plain = new Uint8Array(3000 + i * 1313).map(() => Math.floor(Math.random() * 256));
    const d: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(bytes), size: bytes.byteLength };
    const diffId = digestOf(plain);
    blobs.set(d.digest, bytes).set(diffId, plain);
    descriptors.push(d);
    diffIds.push(diffId);
    layers.push({ descriptor: d, index: i, diffId, open: async () => streamOf(bytes) });
  }
  const configBytes = enc.encode(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds }, history: [] }),
  );
  const config: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.byteLength };
  const manifestBytes = enc.encode(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: descriptors }));
  const digest = digestOf(manifestBytes);
  return {
    blobs,
    image: {
      kind: 'image',
      reference: parseReference(`example.com/stream@${digest}`),
      mediaType: MediaType.OciManifest,
      digest,
      manifestBytes,
      manifest: JSON.parse(new TextDecoder().decode(manifestBytes)) as Image['manifest'],
      configBytes,
      config: JSON.parse(new TextDecoder().decode(configBytes)) as Image['config'],
      layers,
      descriptor: { mediaType: MediaType.OciManifest, digest, size: manifestBytes.byteLength },
    },
  };
}

describe('streamed archive', () => {
  for (const format of formats) {
    it(`${format.id}: written in archive order as blobs arrive out of order, equals the composed archive`, async () => {
      const { image: img, blobs } = image(5);
      const sinkImages = [{ image: img, reference: parseReference('example.com/stream:v1') }];
      const store = new MemoryBlobStore();
      const descriptorSizes = new Map(img.layers.map((l) => [l.descriptor.digest, l.descriptor.size]));
      // Planned before any blob is stored: compressed sizes from descriptors, uncompressed ones later.
      const entries = await format.entries(sinkImages, {
        size: async (k) => descriptorSizes.get(k)!,
        later: (k) => !descriptorSizes.has(k),
      });
      expect(entries.some((e) => isLaterRef(e.content))).toBe(format.needsUncompressed);
      expect(plannedSize(entries) === undefined).toBe(format.needsUncompressed);
      const order = blobOrder(entries);
      expect(order.length).toBeGreaterThan(0);
      expect([...blobUses(entries).keys()].sort()).toEqual([...order].sort());

      // Store the blobs in reverse archive order, one every few ms, while the writer waits for its turn.
      const waiters = new Map<string, (n: number) => void>();
      const ready = (key: string) =>
        new Promise<number>((resolve) => {
          void store.size(key).then((n) => (n === undefined ? waiters.set(key, resolve) : resolve(n)));
        });
      const chunks: Uint8Array[] = [];
      const log: string[] = [];
      const sink: ArchiveSink = {
        write: async (b) => void chunks.push(b.slice()),
        copy: async (key, size, at) => {
          log.push(key);
          // Where the blob starts in the archive: everything written before it.
          expect(at).toBe(chunks.reduce((n, c) => n + c.byteLength, 0));
          const got = new Uint8Array(await new Response(await store.open(key)).arrayBuffer());
          expect(got.byteLength).toBe(size);
          chunks.push(got);
        },
      };
      const writing = writeEntries(entries, sink, ready);
      for (const key of [...order].reverse()) {
        await new Promise((r) => setTimeout(r, 2));
        await store.put(key, streamOf(blobs.get(key)!));
        waiters.get(key)?.(blobs.get(key)!.byteLength);
      }
      const written = await writing;
      expect(log).toEqual(order);
      const streamed = Buffer.concat(chunks);
      expect(written).toBe(streamed.byteLength);

      const plan = await format.plan(sinkImages, { size: async (k) => (await store.size(k))! });
      const composed = Buffer.from(await new Response(assembleStream(plan, store)).arrayBuffer());
      expect(streamed.equals(composed)).toBe(true);
      if (!format.needsUncompressed) expect(plannedSize(entries)).toBe(plan.size);
      const file = join(dir, `${format.id}.tar`);
      await writeFile(file, streamed);
      expect(execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n').length).toBe(entries.length);
    });
  }

  for (const format of formats.filter((f) => !f.needsUncompressed)) {
    it(`${format.id}: a sink that places each blob at its \`at\` (follow resolving at once, blobs placed last, in reverse) holds the composed archive`, async () => {
      const { image: img, blobs } = image(5);
      const sinkImages = [{ image: img, reference: parseReference('example.com/stream:v1') }];
      const sizes = new Map([...blobs].map(([k, b]) => [k, b.byteLength]));
      const entries = await format.entries(sinkImages, { size: async (k) => sizes.get(k)! });
      const size = plannedSize(entries)!;
      const file = new Uint8Array(size);
      let cursor = 0;
      const placed: { key: string; n: number; at: number }[] = [];
      const sink: ArchiveSink = {
        write: async (b) => {
          file.set(b, cursor);
          cursor += b.byteLength;
        },
        copy: async () => {
          throw new Error('every blob is planned: none is copied in order');
        },
        follow: async (key, n, at) => {
          placed.push({ key, n, at });
          cursor = at + n;
        },
      };
      const ready = async () => {
        throw new Error('no blob is waited for');
      };
      expect(await writeEntries(entries, sink, ready)).toBe(size);
      expect(placed.map((p) => p.key)).toEqual(blobOrder(entries));
      for (const { key, n, at } of placed.reverse()) {
        expect(n).toBe(blobs.get(key)!.byteLength);
        file.set(blobs.get(key)!, at);
      }
      const store = new MemoryBlobStore();
      for (const [k, b] of blobs) await store.put(k, streamOf(b));
      const plan = await format.plan(sinkImages, { size: async (k) => (await store.size(k))! });
      const composed = Buffer.from(await new Response(assembleStream(plan, store)).arrayBuffer());
      expect(Buffer.from(file).equals(composed)).toBe(true);
    });
  }

  it('a blob that never becomes ready stops the writer with the pull’s error, before anything after it is written', async () => {
    const { image: img } = image(2);
    const format = formats.find((f) => f.id === 'tarball')!;
    const entries = await format.entries([{ image: img, reference: parseReference('example.com/stream:v1') }], {
      size: async (k) => img.layers.find((l) => l.descriptor.digest === k)!.descriptor.size,
    });
    const copied: string[] = [];
    const sink: ArchiveSink = { write: async () => undefined, copy: async (k) => void copied.push(k) };
    const err = new Error('layer 2 failed');
    const first = img.layers[0]!.descriptor;
    await expect(
      writeEntries(entries, sink, async (k) => {
        if (k === first.digest) return first.size;
        throw err;
      }),
    ).rejects.toBe(err);
    expect(copied).toEqual([first.digest]);
  });
});
