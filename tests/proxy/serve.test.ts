import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import { MALLOC_TUNABLES, startServer, withMallocTunables, type RunningServer } from '../../src/proxy/serve.ts';
import { bytes, sha256, startFake, type FakeServer } from './fakes.ts';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const BLOB = bytes(2 * 1024 * 1024 + 5, 3);

let dir: string;
let registry: FakeServer;
let server: RunningServer;
let endlessClosed: Promise<void>;

/** A raw request, so paths like `/../x` reach the server as written. */
function rawGet(url: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(url), { path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-serve-'));
  await mkdir(join(dir, 'assets'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>longshore</title>');
  await writeFile(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
  await writeFile(join(dir, 'assets', 'hash.wasm'), new Uint8Array([0, 97, 115, 109]));

  let resolveClosed: () => void = () => undefined;
  endlessClosed = new Promise<void>((resolve) => (resolveClosed = resolve));
  registry = await startFake((req, res) => {
    if (req.url === `/v2/app/blobs/${DIGEST}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BLOB.byteLength) });
      res.end(BLOB);
      return;
    }
    if (req.url === `/v2/endless/blobs/${DIGEST}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = new Uint8Array(64 * 1024);
      const timer = setInterval(() => res.write(chunk), 5);
      res.on('close', () => {
        clearInterval(timer);
        resolveClosed();
      });
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const config = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: registry.host, scheme: 'http' }],
    mirrors: { 'docker.io': registry.origin },
    allowedOrigins: ['http://elsewhere.example'],
  });
  server = await startServer(config, { staticDir: dir });
});

afterAll(async () => {
  await server?.close();
  await registry?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('startServer', () => {
  it('listens on the port it was given (0 → a free one) and reports its URL', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(server.url).not.toMatch(/:0\/$/);
  });

  it('serves index.html, assets with their content types, and falls back to index.html for app routes', async () => {
    const index = await fetch(server.url);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    expect(await index.text()).toContain('<title>longshore</title>');

    const js = await fetch(new URL('assets/index-abc123.js', server.url));
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toMatch(/immutable/);
    expect(await js.text()).toBe('console.log(1)');

    const wasm = await fetch(new URL('assets/hash.wasm', server.url));
    expect(wasm.headers.get('content-type')).toBe('application/wasm');

    const route = await fetch(new URL('pull/ghcr.io/foo', server.url));
    expect(route.status).toBe(200);
    expect(await route.text()).toContain('<title>longshore</title>');

    expect((await fetch(new URL('assets/missing.js', server.url))).status).toBe(404);
    expect((await fetch(server.url, { method: 'POST', body: 'x' })).status).toBe(405);
    const head = await fetch(server.url, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String('<!doctype html><title>longshore</title>'.length));
  });

  it('never serves files outside the static directory', async () => {
    for (const path of ['/../../../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2f..%2fetc%2fpasswd', '/assets/..%5c..%5cetc']) {
      const { status, body } = await rawGet(server.url, path);
      expect(body, path).not.toContain('root:');
      expect([200, 404], path).toContain(status);
    }
  });

  it('serves the public config', async () => {
    const response = await fetch(new URL('config.json', server.url));
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await response.json()) as { proxyPath: string; registries: string[] };
    expect(body).toEqual({ proxyPath: '/proxy', registries: [registry.host, 'docker.io'] });
  });

  it('proxies registry requests with streaming bodies and CORS headers', async () => {
    const response = await fetch(new URL(`proxy/${registry.host}/v2/app/blobs/${DIGEST}`, server.url), {
      headers: { origin: 'http://elsewhere.example' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(BLOB.byteLength));
    expect(response.headers.get('access-control-allow-origin')).toBe('http://elsewhere.example');
    expect(await sha256(await response.arrayBuffer())).toBe(await sha256(BLOB));

    const mirrored = await fetch(new URL(`proxy/docker.io/v2/app/blobs/${DIGEST}`, server.url), { method: 'HEAD' });
    expect(mirrored.status).toBe(200);
    expect(mirrored.headers.get('content-length')).toBe(String(BLOB.byteLength));

    const denied = await fetch(new URL('proxy/evil.example/v2/', server.url));
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('PROXY_DENIED');

    const trace = await rawMethod(server.url, 'TRACE', `/proxy/${registry.host}/v2/`);
    expect(trace).toBe(405);
  });

  it('closes the upstream connection when the browser cancels a download', async () => {
    const controller = new AbortController();
    const response = await fetch(new URL(`proxy/${registry.host}/v2/endless/blobs/${DIGEST}`, server.url), { signal: controller.signal });
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await expect(
      Promise.race([endlessClosed.then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('still open'), 5000))]),
    ).resolves.toBe('closed');
  });
});

function rawMethod(url: string, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(url), { path, method }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('connection cap', () => {
  it('closes connections past limits.maxConnections at once, and serves again when one is gone', async () => {
    const { connect } = await import('node:net');
    const capped = await startServer(
      parseConfig({
        ...structuredClone(DEFAULT_CONFIG),
        listen: { host: '127.0.0.1', port: 0 },
        limits: { ...DEFAULT_CONFIG.limits, maxConnections: 2 },
      }),
      { staticDir: dir },
    );
    try {
      const { port } = new URL(capped.url);
      const open = () =>
        new Promise<import('node:net').Socket>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1', () => resolve(socket));
          socket.on('error', reject);
        });
      const closedSoon = (socket: import('node:net').Socket) =>
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 1000);
          socket.once('close', () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
      const held = [await open(), await open()];
      const third = await open();
      expect(await closedSoon(third)).toBe(true);
      held[0]!.destroy();
      await expect
        .poll(
          async () =>
            await fetch(new URL('healthz', capped.url)).then(
              (r) => r.status,
              () => 0,
            ),
        )
        .toBe(200);
      held[1]!.destroy();
    } finally {
      await capped.close();
    }
  });
});

/** The dynamic loader of this (Debian, x86-64 or arm64) machine. */
const LOADER = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1'].find((p) => existsSync(p)) ?? '/lib64/ld-linux-x86-64.so.2';

describe('npm start', () => {
  const root = join(import.meta.dirname, '../..');
  /** What the server process sees as GLIBC_TUNABLES when started by `npm start`'s command (sh, as npm runs it). */
  const startedWith = async (env: NodeJS.ProcessEnv): Promise<string> => {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts: { start: string } };
    const serve = 'node --import tsx src/proxy/serve.ts';
    expect(pkg.scripts.start.endsWith(serve)).toBe(true);
    const command = pkg.scripts.start
      .replace(/^vite build && /, '')
      .replace(serve, `node -e "process.stdout.write(process.env.GLIBC_TUNABLES ?? '')"`);
    return execFileSync('sh', ['-c', command], { cwd: root, env, encoding: 'utf8' });
  };

  it('runs the server with glibc malloc keeping freed heap, unless GLIBC_TUNABLES is set already', async () => {
    const { GLIBC_TUNABLES: _unset, ...env } = process.env;
    expect(await startedWith(env)).toBe(MALLOC_TUNABLES);
    expect(await startedWith({ ...env, GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toBe('glibc.malloc.arena_max=2');
    expect(withMallocTunables(env)['GLIBC_TUNABLES']).toBe(MALLOC_TUNABLES);
    expect(withMallocTunables({ ...env, GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })['GLIBC_TUNABLES']).toBe('glibc.malloc.arena_max=2');
  });

  it('names tunables glibc knows (it ignores unknown ones silently)', () => {
    // The dynamic loader lists every tunable with the value it took from GLIBC_TUNABLES.
    const { GLIBC_TUNABLES: _unset, ...env } = process.env;
    const listed = execFileSync(LOADER, ['--list-tunables'], { env: withMallocTunables(env), encoding: 'utf8' });
    expect(listed).toMatch(/^glibc\.malloc\.trim_threshold: 0x8000000 /m);
    expect(listed).toMatch(/^glibc\.malloc\.mmap_threshold: 0x400000 /m);
  });
});
