// deploy/nginx/longshore.conf as shipped (ports, root and listen substituted), in front of two
// `npm start` instances: the app is served by nginx, /proxy/ is balanced, and when the instance
// serving a download is stopped mid-stream, the client's retry completes on the other one.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, closedPort, sha256, startFake, type FakeServer } from './fakes.ts';
import { get } from './hostile-suite.ts';
import { startProxyProcess, type ProxyProcess } from './proxy-process.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const BLOB = bytes(48 * 1024 * 1024, 5);
const DIGEST = `sha256:${'f'.repeat(64)}`;

let registry: FakeServer;
let instances: ProxyProcess[] = [];
let nginx: ChildProcess | undefined;
let dir: string;
let base: string;

beforeAll(async () => {
  // A registry that sends the blob at a bounded pace, so a download takes a while.
  registry = await startFake(async (req, res) => {
    if (req.url !== `/v2/big/blobs/${DIGEST}`) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    res.writeHead(range ? 206 : 200, {
      'content-length': String(BLOB.length - start),
      ...(range ? { 'content-range': `bytes ${start}-${BLOB.length - 1}/${BLOB.length}` } : {}),
    });
    for (let at = start; at < BLOB.length && !res.destroyed; at += 1024 * 1024) {
      if (!res.write(BLOB.subarray(at, Math.min(at + 1024 * 1024, BLOB.length)))) await new Promise((r) => res.once('drain', r));
      await new Promise((r) => setTimeout(r, 20));
    }
    res.end();
  });
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: registry.host, scheme: 'http' }],
    mirrors: {},
    tokenRealms: [],
    allowLoopback: 'auto',
  };
  instances = await Promise.all([0, 1].map(() => startProxyProcess(config, { LONGSHORE_TRUST_FORWARDED_FOR: 'true' })));

  dir = await mkdtemp(join(tmpdir(), 'longshore-nginx-'));
  // nginx's workers drop root for `nobody`: they must be able to read the app.
  await chmod(dir, 0o755);
  const dist = join(dir, 'dist');
  await mkdir(dist);
  await writeFile(join(dist, 'index.html'), '<!doctype html><title>longshore via nginx</title>');
  const port = await closedPort();
  const ports = instances.map((i) => new URL(i.url).port);
  const site = (await readFile(join(ROOT, 'deploy/nginx/longshore.conf'), 'utf8'))
    .replace('server 127.0.0.1:8081', `server 127.0.0.1:${ports[0]}`)
    .replace('server 127.0.0.1:8082', `server 127.0.0.1:${ports[1]}`)
    .replace('root /srv/longshore/dist;', `root ${dist};`)
    .replace('listen 80;', `listen 127.0.0.1:${port};`);
  expect(site).toContain(`listen 127.0.0.1:${port};`);
  await writeFile(
    join(dir, 'nginx.conf'),
    `
worker_processes 1;
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${site}
}
`,
  );
  nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  nginx.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  base = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 15_000;
  while (
    !(await fetch(base).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (nginx.exitCode !== null || Date.now() > deadline)
      throw new Error(`nginx did not start:\n${stderr}\n${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((r) => nginx!.once('exit', r));
    nginx.kill('SIGTERM');
    await exited;
  }
  await Promise.all(instances.map((i) => i.stop()));
  await registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Which instance has a stream open right now (from its /metrics). */
async function streaming(): Promise<number> {
  for (let i = 0; i < instances.length; i++) {
    const text = (await get(`${instances[i]!.url}metrics`)).body.toString();
    if (/^longshore_proxy_open_streams [1-9]/m.test(text)) return i;
  }
  return -1;
}

describe('nginx in front of two instances', () => {
  it('serves the app itself and the proxy through the instances', async () => {
    const app = await get(base);
    expect(app.body.toString()).toContain('longshore via nginx');
    const manifest = await get(`${base}proxy/${registry.host}/v2/x/manifests/latest`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers['via']).toMatch(/longshore/);
    // The instance that served it logged it.
    await expect.poll(() => instances.flatMap((i) => i.logs()).some((l) => l.path === '/v2/x/manifests/latest')).toBe(true);
  });

  it('a download cut by stopping its instance mid-stream completes when the client retries', async () => {
    const url = `${base}proxy/${registry.host}/v2/big/blobs/${DIGEST}`;
    const first = await fetch(url);
    expect(first.status).toBe(200);
    // Kept through nginx: without it Chromium buffers a blob body ahead of the page (README, Performance).
    expect(first.headers.get('cache-control')).toBe('no-store');
    const reader = first.body!.getReader();
    const chunks: Uint8Array[] = [];
    let received = 0;
    while (received < 4 * 1024 * 1024) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the download ended before the instance was stopped');
      chunks.push(value);
      received += value.byteLength;
    }
    const serving = await streaming();
    expect(serving).toBeGreaterThanOrEqual(0);
    await instances[serving]!.stop();
    // The client sees the cut...
    await expect(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return 'complete';
          chunks.push(value);
          received += value.byteLength;
        }
      })(),
    ).rejects.toThrow();
    expect(received).toBeLessThan(BLOB.length);
    // ...and retries the rest with a Range request, which nginx sends to the instance still up.
    const rest = await fetch(url, { headers: { range: `bytes=${received}-` } });
    expect(rest.status).toBe(206);
    chunks.push(new Uint8Array(await rest.arrayBuffer()));
    expect(await sha256(Buffer.concat(chunks))).toBe(await sha256(BLOB));
  });
});
