// The longshore server (built app + CORS proxy) as its own process, started like `npm start`
// (serve.ts with LONGSHORE_STATIC_DIR pointing at the bench build), so its memory is
// read apart from the benchmark's; and the proxy's cost: one large blob fetched by curl straight
// from the registry (bearer token; the redirect followed without Authorization) versus through
// /proxy/ (which follows the redirect itself).
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runText } from '../helpers/command.ts';
import { withMallocTunables } from '../../src/proxy/serve.ts';
import { rssBytes } from './proc.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export interface ProxyProcess {
  /** 'http://127.0.0.1:PORT/' */
  url: string;
  pid: number;
  rss(): number | undefined;
  close(): Promise<void>;
}

export interface ProxyProcessOptions {
  registryHosts: string[];
  tokenRealms: string[];
  /** Where the JSON config file is written. */
  dir: string;
  /** The built app to serve. */
  staticDir: string;
}

const STARTUP_TIMEOUT_MS = 30_000;

/** `node --import tsx src/proxy/serve.ts` with LONGSHORE_CONFIG, LONGSHORE_PORT=0 and LONGSHORE_STATIC_DIR; resolves once it prints its URL. */
export async function startProxyProcess(options: ProxyProcessOptions): Promise<ProxyProcess> {
  const configFile = join(options.dir, 'longshore-bench-config.json');
  await writeFile(
    configFile,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      registries: options.registryHosts.map((host) => ({ host, scheme: 'http' })),
      mirrors: {},
      tokenRealms: options.tokenRealms,
      allowLoopback: true,
    }),
  );
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/proxy/serve.ts'], {
    cwd: REPO_ROOT,
    // As `npm start` runs it (its malloc settings included).
    env: withMallocTunables({ ...process.env, LONGSHORE_CONFIG: configFile, LONGSHORE_PORT: '0', LONGSHORE_STATIC_DIR: options.staticDir }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  let output = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the longshore server printed no URL within ${STARTUP_TIMEOUT_MS / 1000} s:\n${output}`)),
      STARTUP_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the longshore server exited (${code ?? signal}):\n${output}`));
    });
  });
  const pid = child.pid!;
  return {
    url,
    pid,
    rss: () => rssBytes(pid),
    close: () =>
      new Promise<void>((resolveClose) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolveClose();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolveClose();
        });
        child.kill('SIGTERM');
      }),
  };
}

export interface BlobTarget {
  /** 'http://127.0.0.1:PORT' */
  registryUrl: string;
  /** '127.0.0.1:PORT' */
  registryHost: string;
  repository: string;
  digest: string;
  size: number;
  realm: string;
  service: string;
}

/** An anonymous pull token from the realm (distribution docs/spec/auth/token.md). */
export async function pullToken(t: Pick<BlobTarget, 'realm' | 'service' | 'repository'>): Promise<string> {
  const url = `${t.realm}?service=${encodeURIComponent(t.service)}&scope=${encodeURIComponent(`repository:${t.repository}:pull`)}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`token realm ${url}: HTTP ${response.status}`);
  const body = (await response.json()) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!token) throw new Error(`token realm ${url} gave no token`);
  return token;
}

interface CurlResult {
  status: number;
  bytes: number;
  seconds: number;
  redirect: string;
}

/**
 * One GET by curl, body thrown away. curl is the client so that neither the receiving side nor
 * its JavaScript shares a process with the static server, which lives in the benchmark's process.
 */
async function curl(url: string, token?: string): Promise<CurlResult> {
  const args = [
    '-sS',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{size_download} %{time_total} %{redirect_url}',
    ...(token ? ['-H', `Authorization: Bearer ${token}`] : []),
    url,
  ];
  const [status, bytes, seconds, redirect] = (await runText('curl', args)).trim().split(' ');
  return { status: Number(status), bytes: Number(bytes), seconds: Number(seconds), redirect: redirect ?? '' };
}

function expectBlob(r: CurlResult, what: string, size: number): void {
  if (r.status !== 200 || r.bytes !== size) throw new Error(`${what}: HTTP ${r.status}, ${r.bytes} bytes (expected 200, ${size})`);
}

/** Seconds (curl's time_total) to fetch the blob from the registry and then, without Authorization, from where it redirects. */
export async function fetchDirect(t: BlobTarget, token: string): Promise<number> {
  const first = await curl(`${t.registryUrl}/v2/${t.repository}/blobs/${t.digest}`, token);
  if (first.status >= 300 && first.status < 400 && first.redirect) {
    const second = await curl(first.redirect);
    expectBlob(second, `direct GET ${t.digest} (redirected)`, t.size);
    return first.seconds + second.seconds;
  }
  expectBlob(first, `direct GET ${t.digest}`, t.size);
  return first.seconds;
}

/** Seconds to fetch the same blob through the longshore proxy, which follows the redirect itself, as the page does. */
export async function fetchThroughProxy(t: BlobTarget, token: string, proxyUrl: string): Promise<number> {
  const base = proxyUrl.replace(/\/+$/, '');
  const r = await curl(`${base}/proxy/${t.registryHost}/v2/${t.repository}/blobs/${t.digest}`, token);
  expectBlob(r, `proxied GET ${t.digest}`, t.size);
  return r.seconds;
}

export interface ProxyCost {
  bytes: number;
  directSeconds: number[];
  proxySeconds: number[];
}

/** Direct and proxied fetches interleaved, after one unmeasured fetch of each (page cache warm for both). */
export async function measureProxyCost(t: BlobTarget, proxyUrl: string, rounds: number): Promise<ProxyCost> {
  const token = await pullToken(t);
  await fetchDirect(t, token);
  await fetchThroughProxy(t, token, proxyUrl);
  const cost: ProxyCost = { bytes: t.size, directSeconds: [], proxySeconds: [] };
  for (let i = 0; i < rounds; i++) {
    cost.directSeconds.push(await fetchDirect(t, token));
    cost.proxySeconds.push(await fetchThroughProxy(t, token, proxyUrl));
  }
  return cost;
}
