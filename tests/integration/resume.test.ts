// Resume against the real token registry with redirected blobs: a relay that cuts each large blob
// once (tests/helpers/cut-relay.ts), a pull stopped mid-layer and pulled again, and the real
// longshore server (src/proxy/serve.ts) stopped and started on the same port mid-pull. The static
// server (the "CDN" blobs redirect to) logs every request, so Range requests are asserted where
// the bytes are served.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { proxyRewrite } from '../../src/core/http/transport.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { pushBigImage, type BigImage } from '../helpers/big-image.ts';
import { startCutRelay, type CutRelay } from '../helpers/cut-relay.ts';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import { sha256Digest } from '../helpers/images.ts';
import { rejection } from '../helpers/assert.ts';

const env = inject('registryEnv');
const MiB = 1024 * 1024;
let image: BigImage;
let relay: CutRelay;

beforeAll(async () => {
  image = await pushBigImage(env, 'resume/big', [3 * MiB, 5 * MiB]);
  relay = await startCutRelay(env.token.url);
}, 120_000);

afterAll(async () => {
  await relay?.close();
});

function client(transport: Partial<ConstructorParameters<typeof RegistryClient>[0]['transport']> = {}) {
  return new RegistryClient({ transport: { fetch: (input, init) => globalThis.fetch(input, init), ...transport } });
}

/** Range headers the static server saw for `digest` since `mark` ('' for a request without Range). */
async function staticRanges(mark: number, digest: string): Promise<string[]> {
  const hex = digest.slice('sha256:'.length);
  const log = await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl, mark);
  return log
    .filter((r) => r.method === 'GET' && r.url.includes(hex))
    .map((r) => (typeof r.headers.range === 'string' ? r.headers.range : ''));
}

async function storedBytes(store: MemoryBlobStore, key: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of (await store.open(key))! as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function expectAllLayers(store: MemoryBlobStore): Promise<void> {
  for (const l of image.layers) expect(sha256Digest(await storedBytes(store, l.digest)), l.digest).toBe(l.digest);
}

describe('resume against the real token registry with redirected blobs', () => {
  it('each large blob cut once after 1 MiB: the pull completes, Range asks for the rest, ≤ 1.1× the layer bytes cross the wire', async () => {
    relay.rules = { cutAfter: MiB, minBlobBytes: 2 * MiB };
    relay.blobs.clear();
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    const store = new MemoryBlobStore();
    await pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), { store });
    await expectAllLayers(store);
    for (const l of image.layers) {
      const traffic = relay.blobs.get(l.digest.slice(7))!;
      expect(traffic.cuts, l.digest).toBe(1);
      const ranges = await staticRanges(mark, l.digest);
      expect(ranges[0]).toBe('');
      expect(ranges).toHaveLength(2);
      // The resume starts where the client's bytes stopped: after the first byte, at or before the cut.
      const start = Number(/^bytes=(\d+)-$/.exec(ranges[1]!)?.[1]);
      expect(start).toBeGreaterThan(0);
      expect(start).toBeLessThanOrEqual(MiB);
    }
    const layerBytes = image.layers.reduce((n, l) => n + l.size, 0);
    const fetched = image.layers.reduce((n, l) => n + relay.blobs.get(l.digest.slice(7))!.bytes, 0);
    expect(fetched).toBeLessThanOrEqual(1.1 * layerBytes);
  });

  it('a pull stopped mid-layer leaves a verified prefix; the next pull (a new client) asks only for the rest', async () => {
    const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
    relay.rules = { stallAfter: 2 * MiB, minBlobBytes: 4 * MiB };
    relay.blobs.clear();
    const store = new MemoryBlobStore({ checkpointBytes: 256 * 1024 });
    const stop = new AbortController();
    const first = pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), {
      store,
      signal: stop.signal,
      onProgress: (e) => {
        if (e.type === 'layer' && e.digest === big.digest && e.done >= 2 * MiB) stop.abort();
      },
    });
    expect((await rejection(first)).code).toBe('ABORTED');
    relay.releaseStalls();
    const partial = store.listPartials().find((p) => p.key === big.digest)!;
    expect(partial.done).toBeGreaterThan(MiB);
    expect(await store.has(big.digest)).toBe(false);

    relay.rules = {};
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    await pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), { store });
    expect(await staticRanges(mark, big.digest)).toEqual([`bytes=${partial.done}-`]);
    await expectAllLayers(store);
    expect(store.listPartials()).toEqual([]);
  });

  it('parallel ranges: a blob over the threshold is fetched as 4 ranges at the redirect target and verified', async () => {
    const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
    const small = image.layers.find((l) => l !== big)!;
    relay.rules = {};
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    const store = new MemoryBlobStore();
    await pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), {
      store,
      parallel: { connections: 4, threshold: 4 * MiB },
    });
    await expectAllLayers(store);
    const ranges = await staticRanges(mark, big.digest);
    const quarter = Math.ceil(big.size / 4);
    expect(ranges.sort()).toEqual([0, 1, 2, 3].map((i) => `bytes=${i * quarter}-${Math.min(big.size, (i + 1) * quarter) - 1}`).sort());
    expect(await staticRanges(mark, small.digest)).toEqual(['']);
  });

  it('parallel ranges over more pieces than connections: 1 MiB pieces in order at the redirect target, each asked once', async () => {
    const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
    relay.rules = {};
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    const store = new MemoryBlobStore();
    await pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), {
      store,
      parallel: { connections: 4, threshold: 4 * MiB, pieceBytes: MiB, aheadPieces: 4 },
    });
    await expectAllLayers(store);
    const ranges = await staticRanges(mark, big.digest);
    const pieces = Math.ceil(big.size / MiB);
    expect(pieces).toBeGreaterThan(4);
    expect(ranges.sort()).toEqual(
      Array.from({ length: pieces }, (_, i) => `bytes=${i * MiB}-${Math.min(big.size, (i + 1) * MiB) - 1}`).sort(),
    );
  });

  it('parallel ranges where the CDN ignores Range (200): the blob falls back to one stream and completes', async () => {
    const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
    relay.rules = { stripRange: true };
    relay.blobs.clear();
    const store = new MemoryBlobStore();
    await pull(new RemoteSource(client()), parseReference(`${relay.host}/${image.path}`), {
      store,
      parallel: { connections: 4, threshold: 4 * MiB },
    });
    await expectAllLayers(store);
    const traffic = relay.blobs.get(big.digest.slice(7))!;
    // Up to four ranges were asked before the first 200 stopped the split (how many went out
    // first depends on scheduling); those 200s were cancelled and the blob came once more, whole,
    // without Range.
    const ranged = traffic.ranges.filter((r) => r !== '');
    expect(ranged.length).toBeGreaterThanOrEqual(1);
    expect(ranged.length).toBeLessThanOrEqual(4);
    expect(traffic.ranges.filter((r) => r === '')).toHaveLength(1);
    expect(traffic.ranges.at(-1)).toBe('');
    expect(traffic.responses).toBeLessThanOrEqual(5);
  });

  it('the longshore server stopped and started again on the same port mid-pull: the pull completes with a Range request through it', async () => {
    const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
    relay.rules = { bytesPerSecond: 4 * MiB };
    relay.blobs.clear();
    const staticDir = await mkdtemp(join(tmpdir(), 'longshore-serve-'));
    const config = (port: number) =>
      parseConfig(
        {
          listen: { host: '127.0.0.1', port },
          registries: [{ host: relay.host, scheme: 'http' }],
          mirrors: {},
          tokenRealms: [env.tokenServer.realm],
          allowLoopback: true,
        },
        'resume test',
      );
    let server: RunningServer = await startServer(config(0), { staticDir });
    const port = Number(new URL(server.url).port);
    try {
      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      let restarting: Promise<void> | undefined;
      const store = new MemoryBlobStore();
      await pull(new RemoteSource(client({ rewrite: proxyRewrite(server.url) })), parseReference(`${relay.host}/${image.path}`), {
        store,
        onProgress: (e) => {
          if (!restarting && e.type === 'layer' && e.digest === big.digest && e.done >= MiB) {
            restarting = (async () => {
              await server.close();
              server = await startServer(config(port), { staticDir });
            })();
          }
        },
      });
      expect(restarting).toBeDefined();
      await restarting;
      await expectAllLayers(store);
      const ranges = await staticRanges(mark, big.digest);
      expect(ranges[0]).toBe('');
      expect(ranges.slice(1).length).toBeGreaterThanOrEqual(1);
      for (const r of ranges.slice(1)) expect(Number(/^bytes=(\d+)-$/.exec(r)?.[1])).toBeGreaterThanOrEqual(MiB);
    } finally {
      await server.close();
      await rm(staticDir, { recursive: true, force: true });
    }
  });
});
