// The Node server's upstream fetch (node-fetch.ts) and its socket-to-socket fast path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { createNodeFetch, nodeSourceOf } from '../../src/proxy/node-fetch.ts';
import { bytes, sha256, startFake, type FakeServer } from './fakes.ts';

const BIG = bytes(24 * 1024 * 1024 + 3, 7);
const SMALL = bytes(300_000, 9);
const d = (c: string) => `sha256:${c.repeat(64)}`;

let upstream: FakeServer;
let server: RunningServer;
let dir: string;

beforeAll(async () => {
  upstream = await startFake((req, res) => {
    if (req.url?.endsWith(d('a'))) {
      res.writeHead(200, { 'content-length': String(BIG.length), 'docker-content-digest': d('a') });
      res.end(BIG);
    } else if (req.url?.endsWith(d('b'))) {
      // Promises more than it sends, then drops the connection.
      res.writeHead(200, { 'content-length': String(SMALL.length) });
      res.write(SMALL.subarray(0, 100_000));
      setTimeout(() => res.destroy(), 50);
    } else if (req.url?.endsWith(d('c'))) {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync(SMALL));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  dir = await mkdtemp(join(tmpdir(), 'longshore-nodefetch-'));
  await writeFile(join(dir, 'index.html'), 'x');
  const config = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: upstream.host, scheme: 'http' }],
  });
  server = await startServer(config, { staticDir: dir });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
  await rm(dir, { recursive: true, force: true });
});

const blobUrl = (digest: string) => new URL(`proxy/${upstream.host}/v2/x/blobs/${digest}`, server.url).toString();

describe('node fetch fast path', () => {
  it('relays a large blob intact, with its headers', async () => {
    const res = await fetch(blobUrl(d('a')));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(BIG.length));
    expect(res.headers.get('docker-content-digest')).toBe(d('a'));
    expect(await sha256(new Uint8Array(await res.arrayBuffer()))).toBe(await sha256(BIG));
  });

  it('cuts the client connection when the upstream breaks off mid-body', async () => {
    const res = await fetch(blobUrl(d('b')));
    expect(res.status).toBe(200);
    await expect(res.arrayBuffer()).rejects.toThrow();
  });

  it('refuses a body the upstream encoded despite Accept-Encoding: identity, without decoding it', async () => {
    const res = await fetch(blobUrl(d('c')));
    expect(res.status).toBe(502);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]!.code).toBe('PROXY_BAD_UPSTREAM');
    expect(body.errors[0]!.message).toMatch(/Content-Encoding: gzip/);
  });

  it('is readable as a web stream too, and then no longer offered for piping', async () => {
    const nodeFetch = createNodeFetch();
    const res = await nodeFetch(`${upstream.origin}/v2/x/blobs/${d('c')}`.replace(d('c'), d('a')));
    expect(nodeSourceOf(res.body)).toBeDefined();
    const reader = res.body!.getReader();
    expect(nodeSourceOf(res.body)).toBeUndefined();
    let n = 0;
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      n += r.value.byteLength;
    }
    expect(n).toBe(BIG.length);
  });

  it('rejects with a typed error when nothing listens', async () => {
    const nodeFetch = createNodeFetch();
    await expect(nodeFetch('http://127.0.0.1:1/v2/')).rejects.toMatchObject({ name: 'UpstreamError', kind: 'unreachable' });
  });
});
