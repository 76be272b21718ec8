// gzip made of several members, in Chromium, Firefox and WebKit (tests/helpers/e2e.ts): Chromium's
// DecompressionStream stops after the first member. GNU gzip makes the members and is the judge of
// what they hold; an image with such a layer is pushed with skopeo, pulled by the app in the `legacy`
// format (GNU tar checks each layer.tar against its diff_id) and listed by the inspector from the
// cached compressed blob.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type Rolldown } from 'vite';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { forEachEngine, type E2EPage, type EngineHandle, type EngineName } from '../helpers/e2e.ts';
import { SEL, waitPulled } from '../helpers/app-page.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { run, runText } from '../helpers/command.ts';
import { reproducibleTarOptions, skopeoCopy } from '../helpers/images.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
const COMPRESSION = resolve(import.meta.dirname, '../../src/core/compression.ts');
let dir: string;
let bundle: string;

/** Deterministic bytes that deflate cannot shrink much, so members hold real Huffman blocks. */
function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const MAGIC = Buffer.from([0x1f, 0x8b, 0x08]);
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** GNU gzip of `bytes` (stdin: no name in the header; with `named`, from a file: FNAME set). */
async function gnuGzip(bytes: Uint8Array, options: { level?: number; named?: string } = {}): Promise<Buffer> {
  const level = `-${options.level ?? 6}`;
  if (!options.named) return run('gzip', ['-c', level], { input: bytes });
  const path = join(dir, options.named);
  await writeFile(path, bytes);
  return run('gzip', ['-c', level, path]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-gzip-members-'));
  const output = await build({
    configFile: false,
    logLevel: 'warn',
    build: {
      write: false,
      lib: { entry: COMPRESSION, formats: ['iife'], name: 'longshoreCompression', fileName: 'compression' },
      target: 'es2022',
      minify: false,
    },
  });
  const result = (Array.isArray(output) ? output[0] : output) as Rolldown.RolldownOutput;
  bundle = (result.output[0] as { code: string }).code;
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A blank page with src/core/compression.ts loaded (a classic script: no module loader needed). */
async function corePage(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open('about:blank');
  await page.addScript(bundle);
  return page;
}

interface Outcome {
  sha256?: string;
  length?: number;
  code?: string;
  message?: string;
}

/** Decompress `gz` in the page with longshore's decompress(), fed in chunks of `chunk` bytes. */
async function decompressInPage(page: E2EPage, gz: Uint8Array, chunk: number): Promise<Outcome> {
  const outcome = await page.evaluate(
    async ({ b64, chunk }: { b64: string; chunk: number }): Promise<{ output?: string; code?: string; message?: string }> => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      let at = 0;
      const input = new ReadableStream<Uint8Array>({
        pull(c) {
          if (at >= bytes.length) return c.close();
          c.enqueue(bytes.slice(at, at + chunk));
          at += chunk;
        },
      });
      const lib = (window as unknown as { longshoreCompression: typeof import('../../src/core/compression.ts') }).longshoreCompression;
      try {
        const { stream } = await lib.decompress(input);
        // Read by hand: Response.arrayBuffer() would replace the stream's error with its own TypeError.
        const reader = stream.getReader();
        let binary = '';
        for (let r = await reader.read(); !r.done; r = await reader.read()) {
          for (let i = 0; i < r.value.length; i += 0x8000) binary += String.fromCharCode(...r.value.subarray(i, i + 0x8000));
        }
        return { output: btoa(binary) };
      } catch (err) {
        return { code: (err as { code?: string }).code ?? 'none', message: String((err as Error).message) };
      }
    },
    { b64: Buffer.from(gz).toString('base64'), chunk },
  );
  if (!('output' in outcome) || outcome.output === undefined) return outcome;
  const out = Buffer.from(outcome.output, 'base64');
  return { sha256: sha256(out), length: out.length };
}

/** One image for every engine (pushed by the first engine's run; the others pull it). */
const repo = 'test/gzip-members';
const files: Record<string, Uint8Array> = {
  'data/first.bin': noise(150_000, 11),
  'data/middle.txt': new TextEncoder().encode('middle of the layer\n'.repeat(2000)),
  'data/zz-last.bin': noise(90_000, 12),
};
let layerTar: Buffer;
let diffId = '';

/**
 * What each engine's native DecompressionStream('gzip') does with two concatenated members: all
 * three fail (Firefox: "Unexpected input after the end of stream"), so src/core/compression.ts
 * decodes members itself everywhere.
 */
const NATIVE_MULTI_MEMBER: Record<EngineName, 'failed' | 'decoded'> = { chromium: 'failed', firefox: 'failed', webkit: 'failed' };

forEachEngine((engine) => {
  describe('gzip members', () => {
    it("the engine's own DecompressionStream fails on two members (what the rest works around)", async () => {
      const page = await corePage(engine);
      const gz = Buffer.concat([await gnuGzip(noise(1000, 1)), await gnuGzip(noise(1000, 2))]);
      // Firefox also logs the stream's failure to the console (the page catches it): expected here.
      page.allowError(/Unexpected input after the end of stream/);
      const native = await page.evaluate(async (b64: string) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        try {
          await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
          return 'decoded';
        } catch {
          return 'failed';
        }
      }, gz.toString('base64'));
      expect(native).toBe(NATIVE_MULTI_MEMBER[engine.name]);
    });

    it('decodes concatenated members as GNU gzip does, whatever the chunking', async () => {
      const page = await corePage(engine);
      // Content full of `1f 8b 08`: cuts inside a member's data.
      const magicRich = new Uint8Array(70_000);
      for (let i = 0; i < magicRich.length; i += 7) magicRich.set([0x1f, 0x8b, 0x08], i);
      const sprinkled = noise(40_000, 4);
      for (let i = 0; i + 3 < sprinkled.length; i += 50) sprinkled.set(MAGIC, i);
      const gz = Buffer.concat([
        await gnuGzip(noise(300_000, 3), { named: 'first.bin' }),
        await gnuGzip(new Uint8Array(0)),
        await gnuGzip(magicRich, { level: 1 }),
        // Stored blocks (zlib level 0; GNU gzip has none), so the magic in it is there byte for byte.
        gzipSync(sprinkled, { level: 0 }),
        await gnuGzip(new TextEncoder().encode('a small last member\n'.repeat(50))),
      ]);
      let magics = 0;
      for (let i = gz.indexOf(MAGIC); i !== -1; i = gz.indexOf(MAGIC, i + 1)) magics++;
      expect(magics, 'member starts plus the magic inside stored data').toBeGreaterThan(100);
      const truth = await run('gzip', ['-dc'], { input: gz });
      // Every chunking in Chromium: where members are cut is the core's (src/core/compression.ts), the
      // same code in every engine; the other engines' own inflater, fed member by member, needs one.
      const every = engine.name === 'chromium';
      for (const chunk of every ? [5, 4096, 77_777, gz.length] : [4096]) {
        expect(await decompressInPage(page, gz, chunk), `chunks of ${chunk} bytes`).toEqual({
          sha256: sha256(truth),
          length: truth.length,
        });
      }
      // Byte by byte, a cut's first bytes wait for the next chunk.
      const small = Buffer.concat([
        await gnuGzip(noise(3000, 8), { named: 'small.bin' }),
        await gnuGzip(magicRich.slice(0, 2000), { level: 1 }),
        await gnuGzip(new Uint8Array(0)),
      ]);
      const smallTruth = await run('gzip', ['-dc'], { input: small });
      for (const chunk of every ? [1, 2, 3] : [1]) {
        expect(await decompressInPage(page, small, chunk), `chunks of ${chunk} bytes`).toEqual({
          sha256: sha256(smallTruth),
          length: smallTruth.length,
        });
      }
      // One member is the common case and goes through the same path.
      const single = await gnuGzip(noise(200_000, 5));
      expect(await decompressInPage(page, single, 65_536)).toEqual({ sha256: sha256(noise(200_000, 5)), length: 200_000 });
    });

    it('fails with FORMAT on bytes after the last member, a truncated member or a broken trailer', async () => {
      const page = await corePage(engine);
      const a = await gnuGzip(noise(5000, 6));
      const b = await gnuGzip(noise(5000, 7));
      const cases: [string, Uint8Array][] = [
        ['garbage after the last member', Buffer.concat([a, b, Buffer.from('garbage!')])],
        ['zeros after the last member', Buffer.concat([a, b, Buffer.alloc(512)])],
        ['a truncated second member', Buffer.concat([a, b.subarray(0, b.length - 20)])],
        ['a second member missing its trailer', Buffer.concat([a, b.subarray(0, b.length - 8)])],
      ];
      // A first member whose ISIZE lies.
      const lying = Buffer.from(a);
      lying.writeUInt32LE(lying.readUInt32LE(lying.length - 4) ^ 0xff, lying.length - 4);
      cases.push(['a trailer that does not match', Buffer.concat([lying, b])]);
      for (const [name, gz] of cases) {
        for (const chunk of [3, 4096]) {
          expect(await decompressInPage(page, gz, chunk), `${name}, chunks of ${chunk}`).toMatchObject({ code: 'FORMAT' });
        }
      }
    });
  });

  describe('zstd layers, in the app', () => {
    it('decoded natively where the engine can, else in JavaScript: legacy layer.tar files hash to their diff_ids, and the page says which', async () => {
      const app = await startAppServer([env.anon.host]);
      try {
        const page = await engine.open(app.url);
        await page.waitFor(SEL.name);
        await page.select(SEL.saveTo, 'blob');
        await page.select(SEL.format, 'legacy');
        await page.fill(SEL.name, `${env.anon.host}/${env.fixtures.zstd.path}`);
        await page.click(SEL.pull);
        await waitPulled(page, SEL.download, 45_000);
        const { path: file } = await page.downloadBy(SEL.download);
        const diffIds = (JSON.parse(env.fixtures.zstd.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
        const manifest = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
        expect(manifest[0]!.Layers).toHaveLength(diffIds.length);
        for (const [i, path] of manifest[0]!.Layers.entries()) {
          const hash = (await runText('sh', ['-c', 'tar -xOf "$1" "$2" | sha256sum', 'sh', file, path])).split(' ')[0];
          expect(`sha256:${hash}`).toBe(diffIds[i]);
        }
        const native = await page.evaluate(() => {
          try {
            new DecompressionStream('zstd' as CompressionFormat);
            return true;
          } catch {
            return false;
          }
        });
        await page.click('[data-testid="browser-support"] summary');
        await page.waitFor(SEL.capability('decompress'));
        const said = (await page.text(SEL.capability('decompress')))!.replace(/\s+/g, ' ');
        if (native) expect(said).toMatch(/Native decompression: .*zstd\./);
        else expect(said).toMatch(/zstd is decoded in JavaScript/);
      } finally {
        await app.close();
      }
    });
  });

  describe('an image whose layer is several gzip members, in the app', () => {
    let app: RunningServer;

    afterAll(async () => {
      await app?.close();
    });

    beforeAll(async () => {
      app = await startAppServer([env.anon.host]);
      // Pushed once, for the first engine; the others pull the same image.
      if (diffId) return;
      const stage = join(dir, 'stage');
      for (const [path, content] of Object.entries(files)) {
        await mkdir(join(stage, path, '..'), { recursive: true });
        await writeFile(join(stage, path), content);
      }
      layerTar = await run('tar', ['-C', stage, '-cf', '-', ...reproducibleTarOptions(), '--sort=name', 'data']);
      diffId = `sha256:${sha256(layerTar)}`;
      // Three members, cut mid-file, as `cat a.gz b.gz c.gz` does.
      const cuts = [0, 60_000, 200_000, layerTar.length];
      const parts: Buffer[] = [];
      for (let i = 0; i + 1 < cuts.length; i++) parts.push(await gnuGzip(layerTar.subarray(cuts[i], cuts[i + 1])));
      const layer = Buffer.concat(parts);
      const layout = join(dir, 'layout');
      await mkdir(join(layout, 'blobs/sha256'), { recursive: true });
      const put = async (bytes: Uint8Array | string) => {
        const hex = sha256(bytes);
        await writeFile(join(layout, 'blobs/sha256', hex), bytes);
        return { digest: `sha256:${hex}`, size: typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length };
      };
      const config = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } });
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await put(config)) },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await put(layer)) }],
      });
      const m = await put(manifest);
      await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(layout, 'index.json'),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [
            {
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              ...m,
              annotations: { 'org.opencontainers.image.ref.name': 'latest' },
            },
          ],
        }),
      );
      await skopeoCopy(`oci:${layout}:latest`, `docker://${env.anon.host}/${repo}:latest`, { env: env.skopeoEnv, preserveDigests: true });
    }, 120_000);

    it('pulls it as legacy (layer.tar = diff_id, by GNU tar) and lists it in the inspector', async () => {
      const page = await engine.open(app.url, { width: 1400, height: 1000 });
      await page.waitFor(SEL.name);
      // The pull is offered as a Download button when it ends (streamed saves: tests/e2e/save.test.ts).
      await page.select(SEL.saveTo, 'blob');
      const name = `${env.anon.host}/${repo}:latest`;

      // The default format keeps the compressed blob in the cache; the inspector lists from it.
      await page.fill(SEL.name, name);
      await page.click(SEL.pull);
      await waitPulled(page, SEL.browsePulled, 45_000);
      await page.click(SEL.browsePulled);
      await page.waitFor('[data-testid="inspected-image"]', { timeout: 45_000 });
      await expect.poll(() => page.attr('[data-testid="view-layer-1"]', 'data-state'), { timeout: 30_000 }).toBe('complete');
      await page.fill('[data-testid="filter"]', 'zz-last');
      await expect
        .poll(() => page.attrs('[data-testid="entry-row"]', 'data-path'), { timeout: 20_000 })
        .toEqual(['data', 'data/zz-last.bin']);
      await page.click('[data-testid="mode-flat"]');
      await page.fill('[data-testid="filter"]', '');
      await expect
        .poll(() => page.attr('[data-testid="entry-rows"]', 'data-total'), { timeout: 20_000 })
        .toBe(String(Object.keys(files).length + 1));

      // legacy decompresses the cached layer: every member, checked against the diff_id by GNU tar.
      await page.select(SEL.format, 'legacy');
      await page.click(SEL.pull);
      await waitPulled(page, SEL.download, 45_000);
      const { path: file } = await page.downloadBy(SEL.download);
      const entries = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
      expect(entries[0]!.Layers).toHaveLength(1);
      const extracted = join(dir, `legacy-${engine.name}`);
      await mkdir(extracted);
      await run('tar', ['-xf', file, '-C', extracted]);
      const layerBytes = await readFile(join(extracted, entries[0]!.Layers[0]!));
      expect(`sha256:${sha256(layerBytes)}`).toBe(diffId);
      const listed = (await runText('tar', ['-tf', join(extracted, entries[0]!.Layers[0]!)])).trim().split('\n');
      expect(listed).toEqual(['data/', ...Object.keys(files)]);
    });
  });
});
