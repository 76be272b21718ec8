// npm run load: a bounded load test of the proxy as `npm start` runs it (a child process), with
// autocannon for manifests and plain node:http clients for blobs. Prints throughput, p99,
// errors and the proxy's RSS (peak per phase, sampled from /proc) as a table and JSON. Upstreams
// are small servers in their own process (upstreams.ts: a manifest, a generated 100 MB blob, one
// that never answers), so the numbers are the proxy's, not a registry's. Numbers on a shared
// 2-core machine are noisy: the table carries the load average.
//   npm run load [-- --quick]      (--quick: shorter phases, 20 blob streams)
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { spawn } from 'node:child_process';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { startProxyProcess, type ProxyProcess } from '../proxy/proxy-process.ts';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 4 : 10;
const BLOB_MB = 100;
const BLOB_STREAMS = quick ? 20 : 50;
const DIGEST = `sha256:${'b'.repeat(64)}`;

interface Row {
  phase: string;
  clients: number;
  requestsPerSecond?: number;
  mbPerSecond?: number;
  p99ms?: number;
  errors: number;
  rssPeakMB: number;
  /** The machine's 1-minute load average when the phase ended (2 cores, shared). */
  load?: number;
  note?: string;
}

/** The upstreams, in a child process (see upstreams.ts). */
const upstreamsChild = spawn(process.execPath, ['--import', 'tsx', 'tests/load/upstreams.ts'], {
  env: { ...process.env, BLOB_MB: String(BLOB_MB) },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const hosts = await new Promise<{ registry: string; other: string; hung: string }>((resolve, reject) => {
  let out = '';
  upstreamsChild.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { registry: string; other: string; hung: string });
  });
  upstreamsChild.once('exit', (code) => reject(new Error(`upstreams exited (${code})`)));
});
const registry = { host: hosts.registry };
const other = { host: hosts.other };
const hung = { host: hosts.hung };

const proxy: ProxyProcess = await startProxyProcess(
  {
    listen: { host: '127.0.0.1', port: 0 },
    registries: [registry.host, other.host, hung.host].map((host) => ({ host, scheme: 'http' })),
    mirrors: {},
    tokenRealms: [],
    allowLoopback: 'auto',
  },
  {
    // Every load client comes from 127.0.0.1: the per-client limits would be what is measured.
    LONGSHORE_CLIENT_RATE: '0',
    LONGSHORE_CLIENT_STREAMS: '0',
    LONGSHORE_MAX_CONNECTIONS: '4096',
    LONGSHORE_BODY_IDLE_TIMEOUT_MS: '5000',
    LONGSHORE_HEADERS_TIMEOUT_MS: '5000',
  },
);
const pid = proxy.child.pid!;
const status = (field: string) =>
  Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

/** Runs `fn` while sampling the proxy's RSS; returns its result and the peak in MB. */
async function sampled<T>(fn: () => Promise<T>): Promise<[T, number]> {
  let peak = status('VmRSS');
  const timer = setInterval(() => (peak = Math.max(peak, status('VmRSS'))), 100);
  try {
    return [await fn(), Math.round(peak)];
  } finally {
    clearInterval(timer);
  }
}

const manifestUrl = (host: string, base = proxy.url) => `${base}proxy/${host}/v2/load/test/manifests/latest`;
const blobUrl = `${proxy.url}proxy/${registry.host}/v2/load/test/blobs/${DIGEST}`;

async function cannon(url: string, connections: number, seconds = SECONDS) {
  const r = await autocannon({ url, connections, duration: seconds, timeout: 10 });
  return { rps: Math.round(r.requests.average), p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx };
}

/** GETs `url` and reads it at `bytesPerSecond` (Infinity = as fast as possible) or not at all. */
function download(
  url: string,
  opts: { bytesPerSecond?: number; readFor?: number; never?: boolean } = {},
): Promise<{ bytes: number; ok: boolean; status: number }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, (res: IncomingMessage) => {
      let bytes = 0;
      const finish = (ok: boolean) => resolve({ bytes, ok, status: res.statusCode ?? 0 });
      if (opts.never) {
        res.pause();
        setTimeout(() => {
          req.destroy();
          finish(res.statusCode === 200);
        }, opts.readFor ?? 5000);
        return;
      }
      const started = Date.now();
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (opts.bytesPerSecond) {
          const due = (bytes / opts.bytesPerSecond) * 1000 - (Date.now() - started);
          if (due > 0) {
            res.pause();
            setTimeout(() => res.resume(), due);
          }
        }
        if (opts.readFor && Date.now() - started > opts.readFor) {
          req.destroy();
          finish(res.statusCode === 200);
        }
      });
      res.on('end', () => finish(res.statusCode === 200 && res.complete));
      res.on('error', () => finish(false));
    });
    req.on('error', () => resolve({ bytes: 0, ok: false, status: 0 }));
    req.end();
  });
}

const rows: Row[] = [];
const push = (row: Row) => rows.push({ ...row, load: Math.round(loadavg()[0]! * 10) / 10 });
const baselineRss = Math.round(status('VmRSS'));

// Proxy cost: the same load straight at the registry, then through the proxy.
const direct = await cannon(`http://${registry.host}/v2/load/test/manifests/latest`, 100);
for (const clients of [100, 500]) {
  const [r, rss] = await sampled(() => cannon(manifestUrl(registry.host), clients));
  push({ phase: 'manifests', clients, requestsPerSecond: r.rps, p99ms: r.p99, errors: r.errors, rssPeakMB: rss });
}
push({
  phase: 'manifests, direct (no proxy)',
  clients: 100,
  requestsPerSecond: direct.rps,
  p99ms: direct.p99,
  errors: direct.errors,
  rssPeakMB: 0,
});

// One blob, direct and proxied: the cost on a stream.
const time = async (url: string) => {
  const t = performance.now();
  const r = await download(url);
  return { mbps: r.bytes / 2 ** 20 / ((performance.now() - t) / 1000), ok: r.ok };
};
const blobDirect = await time(`http://${registry.host}/v2/load/test/blobs/${DIGEST}`);
const [blobOne, blobOneRss] = await sampled(() => time(blobUrl));
push({
  phase: `1 blob of ${BLOB_MB} MB, direct / proxied`,
  clients: 1,
  mbPerSecond: Math.round(blobOne.mbps),
  errors: Number(!blobOne.ok),
  rssPeakMB: blobOneRss,
  note: `direct ${Math.round(blobDirect.mbps)} MB/s`,
});

// Concurrent blob streams.
{
  const t = performance.now();
  const [results, rss] = await sampled(() => Promise.all(Array.from({ length: BLOB_STREAMS }, () => download(blobUrl))));
  const mb = results.reduce((n, r) => n + r.bytes, 0) / 2 ** 20;
  const failed = results.filter((r) => !r.ok).map((r) => `${r.status || 'no answer'} after ${Math.round(r.bytes / 2 ** 20)} MB`);
  push({
    phase: `${BLOB_MB} MB blob streams`,
    clients: BLOB_STREAMS,
    mbPerSecond: Math.round(mb / ((performance.now() - t) / 1000)),
    errors: failed.length,
    rssPeakMB: rss,
    note: `${Math.round(mb)} MB relayed${failed.length ? `; failed: ${failed.join(', ')}` : ''}`,
  });
}

// Slow readers (1 MB/s each) while manifests are served.
{
  const [[slow, r], rss] = await sampled(() =>
    Promise.all([
      Promise.all(Array.from({ length: 20 }, () => download(blobUrl, { bytesPerSecond: 2 ** 20, readFor: SECONDS * 1000 }))),
      cannon(manifestUrl(registry.host), 100),
    ]),
  );
  push({
    phase: 'manifests while 20 slow readers (1 MB/s)',
    clients: 100,
    requestsPerSecond: r.rps,
    p99ms: r.p99,
    errors: r.errors + slow.filter((s) => !s.ok).length,
    rssPeakMB: rss,
  });
}

// Clients that never read: they fill that registry's pool; another registry is unaffected.
{
  const [[never, r, same], rss] = await sampled(() =>
    Promise.all([
      Promise.all(Array.from({ length: 100 }, () => download(blobUrl, { never: true, readFor: SECONDS * 1000 }))),
      cannon(manifestUrl(other.host), 100),
      new Promise<Awaited<ReturnType<typeof cannon>>>((resolve) =>
        setTimeout(() => resolve(cannon(manifestUrl(registry.host), 20, 7)), 1000),
      ),
    ]),
  );
  const busy = never.filter((n) => n.status === 503).length;
  push({
    phase: 'other registry while 100 clients never read',
    clients: 100,
    requestsPerSecond: r.rps,
    p99ms: r.p99,
    errors: r.errors,
    rssPeakMB: rss,
    note: `never-readers: ${never.length - busy} got 200 (pool of 64), ${busy} got 503; same registry meanwhile: ${same.errors} answered 503 + Retry-After (pool full, by design)`,
  });
}

// One registry hangs: others go on.
{
  const [[h, r], rss] = await sampled(() =>
    Promise.all([cannon(manifestUrl(hung.host), 50, Math.min(SECONDS, 6)), cannon(manifestUrl(other.host), 100)]),
  );
  push({
    phase: 'other registry while one hangs (50 clients waiting)',
    clients: 100,
    requestsPerSecond: r.rps,
    p99ms: r.p99,
    errors: r.errors,
    rssPeakMB: rss,
    note: `hung registry: ${h.errors} answered 504 (headers bound 5 s)`,
  });
}

const alive = proxy.alive();
const hwm = Math.round(status('VmHWM'));
await proxy.stop();
upstreamsChild.kill('SIGTERM');

const cost = Math.round((1 - rows[0]!.requestsPerSecond! / direct.rps) * 100);
console.log(
  `\nlongshore proxy load test (${quick ? 'quick' : 'full'}, ${new Date().toISOString()}); proxy RSS at start ${baselineRss} MB, peak (VmHWM) ${hwm} MB, alive at end: ${alive}`,
);
console.log('| phase | clients | req/s | MB/s | p99 ms | errors | proxy RSS peak MB | load avg | note |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows)
  console.log(
    `| ${r.phase} | ${r.clients} | ${r.requestsPerSecond ?? ''} | ${r.mbPerSecond ?? ''} | ${r.p99ms ?? ''} | ${r.errors} | ${r.rssPeakMB || ''} | ${r.load} | ${r.note ?? ''} |`,
  );
console.log(
  `\nmanifest throughput through the proxy vs direct at 100 clients: ${cost} % lower; one ${BLOB_MB} MB blob: ${Math.round((1 - blobOne.mbps / blobDirect.mbps) * 100)} % lower`,
);
console.log(JSON.stringify({ quick, rows, baselineRss, hwm, alive, manifestCostPercent: cost }));
process.exit(0);
