// The proxy in front of a real CNCF distribution registry (token auth, blob GETs answered with 307
// to a "CDN" that rejects Authorization like S3 does): a whole anonymous pull through /proxy/,
// with the realm learned from the registry's own challenge.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import { sha256 } from './fakes.ts';

const env = inject('registryEnv');
let server: RunningServer;
let staticDir: string;

beforeAll(async () => {
  const config = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '127.0.0.1', port: 0 },
    registries: [{ host: env.token.host, scheme: 'http' }],
  });
  staticDir = await mkdtemp(join(tmpdir(), 'longshore-proxy-real-'));
  server = await startServer(config, { staticDir });
});

afterAll(async () => {
  await server?.close();
  if (staticDir) await rm(staticDir, { recursive: true, force: true });
});

function viaProxy(url: string): URL {
  const u = new URL(url);
  return new URL(`proxy/${u.host}${u.pathname}${u.search}`, server.url);
}

describe('proxy against a real registry', () => {
  it('pulls a manifest and a redirected blob, learning the realm on the way', async () => {
    const fixture = env.fixtures.oci;
    const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json';
    const manifestUrl = `${env.token.url}/v2/${fixture.repository}/manifests/${fixture.tag}`;

    // The realm is not configured: refused until the registry has named it.
    expect((await fetch(viaProxy(`${env.tokenServer.realm}?service=${env.token.service}`))).status).toBe(403);

    const challenged = await fetch(viaProxy(manifestUrl), { headers: { accept } });
    expect(challenged.status).toBe(401);
    const challenge = challenged.headers.get('x-longshore-www-authenticate')!;
    expect(challenge).toContain(`realm="${env.tokenServer.realm}"`);
    await challenged.body?.cancel();

    const scope = /scope="([^"]+)"/.exec(challenge)![1]!;
    const tokenUrl = `${env.tokenServer.realm}?service=${encodeURIComponent(env.token.service)}&scope=${encodeURIComponent(scope)}`;
    const tokenResponse = await fetch(viaProxy(tokenUrl));
    expect(tokenResponse.status).toBe(200);
    const { token } = (await tokenResponse.json()) as { token: string };
    const authorization = `Bearer ${token}`;

    const manifestResponse = await fetch(viaProxy(manifestUrl), { headers: { accept, authorization } });
    expect(manifestResponse.status).toBe(200);
    expect(manifestResponse.headers.get('docker-content-digest')).toBe(fixture.manifest.digest);
    const manifestBytes = new Uint8Array(await manifestResponse.arrayBuffer());
    expect(await sha256(manifestBytes)).toBe(fixture.manifest.digest);

    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as { layers: { digest: string; size: number }[] };
    const layer = manifest.layers[0]!;
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    const blob = await fetch(viaProxy(`${env.token.url}/v2/${fixture.repository}/blobs/${layer.digest}`), { headers: { authorization } });
    expect(blob.status).toBe(200);
    const blobBytes = new Uint8Array(await blob.arrayBuffer());
    expect(blobBytes.byteLength).toBe(layer.size);
    expect(await sha256(blobBytes)).toBe(layer.digest);

    // The CDN saw the blob request, and without the registry's token.
    const cdnRequests = (await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl, mark)).filter((r) =>
      r.url.includes(layer.digest.replace('sha256:', '')),
    );
    expect(cdnRequests.length).toBeGreaterThan(0);
    for (const r of cdnRequests) {
      expect(r.headers['authorization']).toBeUndefined();
      expect(r.status).toBe(200);
    }
  });

  it('serves a ranged blob request through the redirect', async () => {
    const fixture = env.fixtures.oci;
    const challenged = await fetch(viaProxy(`${env.token.url}/v2/${fixture.repository}/manifests/${fixture.tag}`));
    const scope = /scope="([^"]+)"/.exec(challenged.headers.get('x-longshore-www-authenticate') ?? '')?.[1];
    await challenged.body?.cancel();
    expect(scope).toBeDefined();
    const tokenUrl = `${env.tokenServer.realm}?service=${encodeURIComponent(env.token.service)}&scope=${encodeURIComponent(scope!)}`;
    const { token } = (await (await fetch(viaProxy(tokenUrl))).json()) as { token: string };
    const manifest = JSON.parse(fixture.manifest.raw) as { layers: { digest: string; size: number }[] };
    const layer = manifest.layers[0]!;
    const response = await fetch(viaProxy(`${env.token.url}/v2/${fixture.repository}/blobs/${layer.digest}`), {
      headers: { authorization: `Bearer ${token}`, range: 'bytes=0-9' },
    });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 0-9/${layer.size}`);
    expect((await response.arrayBuffer()).byteLength).toBe(10);
  });
});
