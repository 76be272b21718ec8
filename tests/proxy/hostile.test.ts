// The hostile-upstream suite against the node server as `npm start` runs it (a child process),
// plus what only that server has: the process itself stays up, the upstream pool is bounded
// (clients that never read cannot starve everyone else), one JSON log line per request with
// secrets redacted, /healthz and /metrics.
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFake, type FakeServer } from './fakes.ts';
import { envelopeOf, get, hostileSuite } from './hostile-suite.ts';
import { startHostileUpstream, type HostileUpstream } from './hostile-upstream.ts';
import { startProxyProcess, type ProxyProcess } from './proxy-process.ts';

const SOCKETS = 4;
let hostile: HostileUpstream;
let healthy: FakeServer;
let proxy: ProxyProcess;

beforeAll(async () => {
  hostile = await startHostileUpstream();
  healthy = await startFake((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  proxy = await startProxyProcess(
    {
      listen: { host: '127.0.0.1', port: 0 },
      registries: [
        { host: hostile.host, scheme: 'http' },
        { host: healthy.host, scheme: 'http' },
      ],
      mirrors: {},
      tokenRealms: [],
      allowLoopback: 'auto',
    },
    {
      LONGSHORE_HEADERS_TIMEOUT_MS: '1000',
      LONGSHORE_BODY_IDLE_TIMEOUT_MS: '1000',
      LONGSHORE_POOL_WAIT_MS: '300',
      LONGSHORE_UPSTREAM_SOCKETS: String(SOCKETS),
    },
  );
  hostile.proxyBase = proxy.url;
});

afterAll(async () => {
  await proxy?.stop();
  await hostile?.close();
  await healthy?.close();
});

hostileSuite(() => ({ url: proxy.url, hostile, healthy, exactCodes: true }));

describe('node server under hostile upstreams and clients', () => {
  it('clients that never read hold at most the pool, get cut after the idle bound, and others get a quick 503', async () => {
    const blob = `${proxy.url}proxy/${hostile.host}/v2/endless/blobs/sha256:${'e'.repeat(64)}`;
    // Each takes the headers, then stops reading: the upstream socket behind it goes quiet.
    const held: ClientRequest[] = [];
    const responses: IncomingMessage[] = [];
    for (let i = 0; i < SOCKETS; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest(blob, (res) => {
          res.pause();
          responses.push(res);
          resolve();
        });
        req.on('error', reject);
        req.end();
        held.push(req);
      });
    }
    expect(responses.map((r) => r.statusCode)).toEqual(Array(SOCKETS).fill(200));
    const busy = await get(blob);
    expect(busy.status).toBe(503);
    expect(busy.headers['retry-after']).toBe('1');
    expect(envelopeOf(busy).code).toBe('PROXY_BUSY');
    // Another registry is not affected by this one's full pool.
    expect((await get(`${proxy.url}proxy/${healthy.host}/v2/x/manifests/latest`)).status).toBe(200);
    // The idle bound frees the pool (the upstream sockets behind the idle clients are closed)...
    await expect
      .poll(async () => (await get(`${proxy.url}proxy/${hostile.host}/v2/fine/manifests/latest`)).status, {
        timeout: 10_000,
        interval: 250,
      })
      .toBe(200);
    // ...by cutting the idle downloads, each logged with its cause.
    await expect
      .poll(() => proxy.logs().filter((l) => l.path.includes('/endless/') && l.status === 200 && l.error === 'body-timeout').length, {
        timeout: 10_000,
      })
      .toBe(SOCKETS);
    for (const req of held) req.destroy();
  });

  it('stays up, with nothing reaching the last-resort handler', async () => {
    expect(proxy.alive()).toBe(true);
    expect(proxy.stderr()).not.toMatch(/uncaughtException|unhandledRejection/);
    const health = await get(`${proxy.url}healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body.toString())).toEqual({ status: 'ok' });
  });

  it('logs one JSON line per request, with secrets redacted', async () => {
    await get(`${proxy.url}proxy/${healthy.host}/v2/x/tags/list?n=5&access_token=SECRET123&password=hunter2`, {
      authorization: 'Bearer TOKEN456',
    });
    await expect.poll(() => proxy.logs().some((l) => l.path.startsWith('/v2/x/tags/list'))).toBe(true);
    const line = proxy.logs().find((l) => l.path.startsWith('/v2/x/tags/list'))!;
    expect(line).toMatchObject({
      registry: healthy.host,
      method: 'GET',
      status: 200,
      bytes: 11,
      path: '/v2/x/tags/list?n=5&access_token=REDACTED&password=REDACTED',
    });
    expect(line.client).toBe('127.0.0.1');
    expect(typeof line.ms).toBe('number');
    const all = JSON.stringify(proxy.logs());
    for (const secret of ['SECRET123', 'hunter2', 'TOKEN456']) expect(all).not.toContain(secret);
    // The failures above were logged with their kind.
    const kinds = new Set(proxy.logs().map((l) => l.error));
    for (const kind of ['bad-status', 'headers-timeout', 'reset', 'header-overflow', 'encoding', 'loop', 'body-timeout', 'pool-busy'])
      expect(kinds, kind).toContain(kind);
  });

  it('exposes Prometheus metrics', async () => {
    const metrics = await get(`${proxy.url}metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = metrics.body.toString();
    expect(text).toMatch(/^longshore_proxy_requests_total\{kind="registry",code="2xx"\} \d+$/m);
    expect(text).toMatch(/^longshore_proxy_errors_total\{kind="headers-timeout"\} [1-9]\d*$/m);
    expect(text).toMatch(/^longshore_proxy_errors_total\{kind="pool-busy"\} [1-9]\d*$/m);
    expect(text).toMatch(/^longshore_proxy_open_streams \d+$/m);
    expect(text).toMatch(/^longshore_proxy_upstream_latency_seconds_bucket\{le="\+Inf"\} [1-9]\d*$/m);
    expect(text).toMatch(/^longshore_proxy_response_bytes_total [1-9]\d*$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
  });
});
