// Mirrors with fallback through the real proxy server, against real registries: a mirror that is
// down (a closed port), one that lacks the image (an empty registry), one that has it, and one
// configured without fallback. The answer names who served it (X-Longshore-Served-By).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { freePort } from '../helpers/command.ts';
import { pushImage } from '../helpers/registry-api.ts';
import { startRegistries, type Registries } from '../helpers/registries.ts';
import { startTamperProxy } from '../helpers/tamper-proxy.ts';
import { createServer, type Server, type Socket } from 'node:net';
import { sha256 } from './fakes.ts';

const env = inject('registryEnv');
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
const MIRROR_ONLY = 'mirrored/only-on-mirror';

let mirrorSet: Registries;
let staticDir: string;
let closedPort: number;
const servers: RunningServer[] = [];

/** A proxy whose mirror for the anonymous harness registry is `mirror` (an http origin). */
async function proxyWithMirror(mirror: unknown, headersMs = DEFAULT_CONFIG.timeouts.headersMs): Promise<RunningServer> {
  const config = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: env.anon.host, scheme: 'http' }],
    mirrors: { [env.anon.host]: mirror },
    timeouts: { ...DEFAULT_CONFIG.timeouts, connectMs: 2_000, headersMs },
  });
  const server = await startServer(config, { staticDir });
  servers.push(server);
  return server;
}

const viaProxy = (server: RunningServer, path: string, init?: RequestInit) =>
  fetch(new URL(`proxy/${env.anon.host}${path}`, server.url), {
    ...init,
    headers: { accept: ACCEPT, origin: new URL(server.url).origin, ...init?.headers },
  });

beforeAll(async () => {
  staticDir = await mkdtemp(join(tmpdir(), 'longshore-proxy-mirrors-'));
  // A second, empty set of registries (own storage): its anonymous registry is the mirror.
  mirrorSet = await startRegistries();
  await pushImage(mirrorSet.env.anon.url, MIRROR_ONLY, 'v1', [new Uint8Array(1024)]);
  closedPort = await freePort();
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await mirrorSet?.stop();
  if (staticDir) await rm(staticDir, { recursive: true, force: true });
});

describe('mirrors with fallback', () => {
  it('a mirror that is down: the registry serves, and the answer says so', async () => {
    const server = await proxyWithMirror(`http://127.0.0.1:${closedPort}`);
    const fixture = env.fixtures.oci;
    const response = await viaProxy(server, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
    expect(response.status).toBe(200);
    expect(await sha256(new Uint8Array(await response.arrayBuffer()))).toBe(fixture.manifest.digest);
    expect(response.headers.get('x-longshore-served-by')).toBe('upstream');
    expect(response.headers.get('x-longshore-mirror')).toBe(`127.0.0.1:${closedPort}`);
    expect(response.headers.get('x-longshore-mirror-fallback')).toBe('down');
    // Readable by the page: exposed through CORS.
    const exposed = response.headers.get('access-control-expose-headers') ?? '';
    for (const name of ['x-longshore-served-by', 'x-longshore-mirror', 'x-longshore-mirror-fallback']) expect(exposed).toContain(name);
  });

  it('a mirror that lacks the image: manifest and blob come from the registry', async () => {
    const server = await proxyWithMirror(mirrorSet.env.anon.url);
    const fixture = env.fixtures.oci;
    const manifest = await viaProxy(server, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('x-longshore-served-by')).toBe('upstream');
    expect(manifest.headers.get('x-longshore-mirror-fallback')).toBe('missing');
    const layer = (JSON.parse(await manifest.text()) as { layers: { digest: string; size: number }[] }).layers[0]!;
    const blob = await viaProxy(server, `/v2/${fixture.repository}/blobs/${layer.digest}`, { headers: { range: 'bytes=0-' } });
    expect(blob.status).toBe(206);
    expect(blob.headers.get('x-longshore-served-by')).toBe('upstream');
    expect(await sha256(new Uint8Array(await blob.arrayBuffer()))).toBe(layer.digest);
  });

  it('a mirror that has the image serves it (the registry does not hold it at all)', async () => {
    const server = await proxyWithMirror(mirrorSet.env.anon.url);
    const response = await viaProxy(server, `/v2/${MIRROR_ONLY}/manifests/v1`);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-longshore-served-by')).toBe('mirror');
    expect(response.headers.get('x-longshore-mirror')).toBe(mirrorSet.env.anon.host);
    expect(response.headers.get('x-longshore-mirror-fallback')).toBeNull();
    await response.body?.cancel();
    // …and the registry indeed lacks it: without the mirror this is a 404.
    expect((await fetch(`${env.anon.url}/v2/${MIRROR_ONLY}/manifests/v1`, { headers: { accept: ACCEPT } })).status).toBe(404);
  });

  it('a mirror answering 503 (a real registry behind a failing front): the registry serves', async () => {
    const front = await startTamperProxy(env.anon.url);
    try {
      front.rules.failManifests = { status: 503, count: 1 };
      const server = await proxyWithMirror(`http://${front.host}`);
      const fixture = env.fixtures.v2s2;
      const response = await viaProxy(server, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('x-longshore-served-by')).toBe('upstream');
      expect(response.headers.get('x-longshore-mirror-fallback')).toBe('down');
      await response.body?.cancel();
      expect(front.requests.filter((r) => r.action === 'fail')).toHaveLength(1);
    } finally {
      await front.close();
    }
  });

  it('a mirror that accepts connections but never answers: after timeouts.headersMs the registry serves', async () => {
    // The one fake here: a socket that swallows the request (no registry stalls on purpose).
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { port } = silent.address() as { port: number };
      const server = await proxyWithMirror(`http://127.0.0.1:${port}`, 2_000);
      const fixture = env.fixtures.oci;
      const response = await viaProxy(server, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('x-longshore-mirror-fallback')).toBe('down');
      await response.body?.cancel();
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a mirror configured with "fallback": false is the only source', async () => {
    const down = await proxyWithMirror({ url: `http://127.0.0.1:${closedPort}`, fallback: false });
    const fixture = env.fixtures.oci;
    const refused = await viaProxy(down, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
    expect(refused.status).toBe(502);
    expect(((await refused.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('PROXY_UNREACHABLE');

    const empty = await proxyWithMirror({ url: mirrorSet.env.anon.url, fallback: false });
    const missing = await viaProxy(empty, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-longshore-served-by')).toBe('mirror');
    await missing.body?.cancel();
  });

  it("a mirror that asks for credentials (401) falls back to the registry, which gets the client's Authorization", async () => {
    // The token registry of the mirror set: it answers 401 to the anonymous proxy request.
    const server = await proxyWithMirror(mirrorSet.env.token.url);
    const fixture = env.fixtures.oci;
    const response = await viaProxy(server, `/v2/${fixture.repository}/manifests/${fixture.tag}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-longshore-served-by')).toBe('upstream');
    expect(response.headers.get('x-longshore-mirror-fallback')).toBe('unauthorized');
    await response.body?.cancel();
  });
});
