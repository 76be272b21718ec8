// The shaping relay's cuts, as the benchmark's refetch figures rely on them: `cut=90%` breaks a
// blob's connection exactly once, after 90 % of it (one stream or one of several ranges), every
// byte it counted reaches the client, and what is fetched after the cut is counted apart. The
// upstream is a small in-process blob server with Range support (RFC 9110 §14).
import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLink, startRelay, type Relay } from './relay.ts';

const BIG = 3_000_001;
const SMALL = 500_000;
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const blobs = new Map([
  [digest('a'), Buffer.alloc(BIG, 7)],
  [digest('b'), Buffer.alloc(SMALL, 9)],
]);

let upstream: Server;
let upstreamUrl: string;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const blob = blobs.get(/blobs\/(.+)$/.exec(req.url ?? '')?.[1] ?? '');
    if (!blob) return res.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!range) return res.writeHead(200, { 'content-length': blob.length }).end(blob);
    const start = Number(range[1]);
    const end = range[2] ? Number(range[2]) : blob.length - 1;
    res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${blob.length}` });
    res.end(blob.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
});

/** GET through the relay: the bytes received before the connection ended, and whether the body was whole. */
function fetchBlob(relay: Relay, name: string, range?: string): Promise<{ status: number; bytes: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = get(`${relay.url}/v2/r/blobs/${name}`, { headers: range ? { range } : {}, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete }));
    });
    req.on('error', reject);
  });
}

describe('parseLink', () => {
  it('reads cut=N% as a fraction and cut=N as bytes', () => {
    expect(parseLink('rate=20MB/s,rtt=40ms,cut=90%')).toEqual({ rate: 20e6, rttMs: 40, cutAfter: 0, cutFraction: 0.9 });
    expect(parseLink('cut=50MB')).toMatchObject({ cutAfter: 50e6, cutFraction: 0 });
    expect(() => parseLink('cut=100%')).toThrow(/0 < N < 100/);
  });
});

describe('relay cut=90%', () => {
  it('cuts one stream once after 90 % of the blob; the resumed range is counted after the cut', async () => {
    const relay = await startRelay(upstreamUrl, parseLink('cut=90%'));
    try {
      const first = await fetchBlob(relay, digest('a'));
      const at = Math.ceil(BIG * 0.9);
      expect(first).toEqual({ status: 200, bytes: at, complete: false });
      const rest = await fetchBlob(relay, digest('a'), `bytes=${at}-`);
      expect(rest).toEqual({ status: 206, bytes: BIG - at, complete: true });
      expect(relay.blobs.get(digest('a'))).toMatchObject({ requests: 2, bytes: BIG, afterCut: BIG - at, cut: true, size: BIG });
    } finally {
      await relay.close();
    }
  });

  it('cuts exactly one of several concurrent ranges, when 90 % of the blob has gone through', async () => {
    const relay = await startRelay(upstreamUrl, parseLink('cut=90%'));
    try {
      const half = Math.floor(BIG / 2);
      const parts = await Promise.all([
        fetchBlob(relay, digest('a'), `bytes=0-${half - 1}`),
        fetchBlob(relay, digest('a'), `bytes=${half}-`),
      ]);
      expect(parts.filter((p) => !p.complete)).toHaveLength(1);
      // The other range went on to its end after the cut: no earlier than 90 % of the blob, never all of it.
      const total = parts[0]!.bytes + parts[1]!.bytes;
      expect(total).toBeGreaterThanOrEqual(Math.ceil(BIG * 0.9));
      expect(total).toBeLessThan(BIG);
      expect(relay.blobs.get(digest('a'))).toMatchObject({ cut: true, afterCut: 0, size: BIG });
    } finally {
      await relay.close();
    }
  });

  it('leaves blobs under 1 MB whole', async () => {
    const relay = await startRelay(upstreamUrl, parseLink('cut=90%'));
    try {
      expect(await fetchBlob(relay, digest('b'))).toEqual({ status: 200, bytes: SMALL, complete: true });
      expect(relay.blobs.get(digest('b'))).toMatchObject({ cut: false, bytes: SMALL });
    } finally {
      await relay.close();
    }
  });
});
