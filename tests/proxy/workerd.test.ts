// The same Fetch API handler inside workerd (Cloudflare's open-source Workers runtime), started
// by the test from the entry that deploy/workerd/ documents: the hostile-upstream suite and an
// anonymous pull from the real token-auth registry (challenge → learned realm → token →
// manifest → blob redirected to the "CDN", which must not see Authorization).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import { sha256, startFake, type FakeServer } from './fakes.ts';
import { hostileSuite } from './hostile-suite.ts';
import { startHostileUpstream, type HostileUpstream } from './hostile-upstream.ts';
import { startWorkerd, type WorkerdProcess } from './workerd-process.ts';

const env = inject('registryEnv');
let hostile: HostileUpstream;
let healthy: FakeServer;
let workerd: WorkerdProcess;

beforeAll(async () => {
  hostile = await startHostileUpstream();
  healthy = await startFake((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  workerd = await startWorkerd({
    registries: [
      { host: hostile.host, scheme: 'http' },
      { host: healthy.host, scheme: 'http' },
      { host: env.token.host, scheme: 'http' },
    ],
    mirrors: {},
    tokenRealms: [],
    allowLoopback: 'auto',
    timeouts: { headersMs: 1000, bodyIdleMs: 1000 },
  });
  hostile.proxyBase = workerd.url;
});

afterAll(async () => {
  await workerd?.stop();
  await hostile?.close();
  await healthy?.close();
});

hostileSuite(() => ({ url: workerd.url, hostile, healthy, exactCodes: false }));

describe('workerd', () => {
  it('pulls from the real token-auth registry through the handler', async () => {
    const via = (url: string) => {
      const u = new URL(url);
      return `${workerd.url}proxy/${u.host}${u.pathname}${u.search}`;
    };
    const fixture = env.fixtures.oci;
    const accept = 'application/vnd.oci.image.manifest.v1+json';
    const manifestUrl = `${env.token.url}/v2/${fixture.repository}/manifests/${fixture.tag}`;
    const challenged = await fetch(via(manifestUrl), { headers: { accept } });
    expect(challenged.status).toBe(401);
    const challenge = challenged.headers.get('x-longshore-www-authenticate')!;
    await challenged.body?.cancel();
    const scope = /scope="([^"]+)"/.exec(challenge)![1]!;
    const tokenResponse = await fetch(
      via(`${env.tokenServer.realm}?service=${encodeURIComponent(env.token.service)}&scope=${encodeURIComponent(scope)}`),
    );
    expect(tokenResponse.status).toBe(200);
    const { token } = (await tokenResponse.json()) as { token: string };
    const manifest = await fetch(via(manifestUrl), { headers: { accept, authorization: `Bearer ${token}` } });
    expect(manifest.status).toBe(200);
    const bytes = new Uint8Array(await manifest.arrayBuffer());
    expect(await sha256(bytes)).toBe(fixture.manifest.digest);
    const layer = (JSON.parse(new TextDecoder().decode(bytes)) as { layers: { digest: string; size: number }[] }).layers[0]!;
    const mark = await requestLogMark(env.staticServer.requestLogUrl);
    const blob = await fetch(via(`${env.token.url}/v2/${fixture.repository}/blobs/${layer.digest}`), {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(blob.status).toBe(200);
    expect(await sha256(new Uint8Array(await blob.arrayBuffer()))).toBe(layer.digest);
    const cdn = (await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl, mark)).filter((r) =>
      r.url.includes(layer.digest.slice(7)),
    );
    expect(cdn.length).toBeGreaterThan(0);
    for (const r of cdn) expect(r.headers['authorization']).toBeUndefined();
  });

  it('serves /metrics and stays up', async () => {
    const metrics = await fetch(`${workerd.url}metrics`);
    expect(await metrics.text()).toMatch(/^longshore_proxy_requests_total\{kind="registry",code="2xx"\} [1-9]/m);
    expect(workerd.alive()).toBe(true);
  });
});
