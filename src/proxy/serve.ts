// `npm start`: one node:http server for the built app (dist/) and the CORS proxy on the same
// origin, so the page never needs CORS for registries. Static files get their content type,
// hashed assets a long cache, and unknown extension-less paths fall back to index.html.
//   node --import tsx src/proxy/serve.ts
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, ProxyConfigError, type ProxyConfig } from './config.ts';
import { createAppHandler, type ProxyDeps } from './handler.ts';
import { batched, jsonLines, type RequestLogEntry } from './log.ts';
import { nodeMiddleware } from './node-http.ts';
import { createNodeFetch, nodeRelay } from './node-fetch.ts';

/**
 * glibc malloc settings the server runs with (`npm start` sets GLIBC_TUNABLES to this unless it is
 * set already: a GLIBC_TUNABLES of your own replaces it, so add these to yours). The HTTP client
 * copies every relayed body chunk into a new 64 KiB buffer; freed in bulk by the collector, they
 * left the heap's top free and glibc gave it back to the system (a top over 128 KiB is trimmed), so
 * the next chunks touched fresh pages again: one page fault per 4 KiB relayed. Keeping up to 128 MiB
 * of freed heap, and serving allocations up to 4 MiB from the heap rather than a fresh mapping each
 * (setting the trim threshold turns off glibc's adaptive mmap threshold, which would otherwise stay
 * at 128 KiB), measured on this project's machines (a fault costs ~14 µs there): one proxied 100 MB
 * blob 211-237 MB/s against 100-107 MB/s, 20 blob streams 522-628 MB/s against 191-503 MB/s
 * (`npm run load -- --quick`), the same peak RSS; the proxy's CPU for a 436 MB pull through the
 * bench link 2.2-2.4 s against 2.6-3.7 s (the trim threshold alone).
 */
export const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=134217728:glibc.malloc.mmap_threshold=4194304';

/** `env` with GLIBC_TUNABLES as `npm start` sets it (for tests and tools that start the server themselves). */
export function withMallocTunables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...env, GLIBC_TUNABLES: env['GLIBC_TUNABLES'] || MALLOC_TUNABLES };
}

export interface ServeOptions {
  /** Directory of the built app (`dist/`). */
  staticDir: string;
  /** Passed to the proxy handler; `lookup` defaults to node's DNS resolver. */
  deps?: ProxyDeps;
  /** Where the per-request JSON lines go; default nowhere (`npm start` writes them to stdout). */
  log?: (entry: RequestLogEntry) => void;
}

export interface RunningServer {
  /** `http://host:port/` actually bound (port 0 resolved). */
  url: string;
  close(): Promise<void>;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** Vite puts content-hashed files here: they never change under the same name. */
const IMMUTABLE_PREFIX = '/assets/';

export async function startServer(config: ProxyConfig, options: ServeOptions): Promise<RunningServer> {
  const staticDir = resolve(options.staticDir);
  const deps: ProxyDeps = {
    lookup: async (hostname) => (await lookup(hostname, { all: true })).map((a) => a.address),
    fetch: createNodeFetch(config),
    relay: nodeRelay,
    fetchBounded: true,
    ...(options.log ? { log: options.log } : {}),
    ...options.deps,
  };
  const handler = createAppHandler(config, deps, { metricsExtra: processMetrics });
  const app = nodeMiddleware(handler, { trustForwardedFor: config.trustForwardedFor });
  const server = createServer((req, res) => {
    app(req, res, (err) => {
      if (err) {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('Internal server error\n');
        return;
      }
      serveStatic(req, res, staticDir).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  });
  // A cap on client connections: past it node closes new sockets at once.
  if (config.limits.maxConnections > 0) server.maxConnections = config.limits.maxConnections;
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' || address.address.includes(':') ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/`,
    close: () =>
      new Promise<void>((resolveClose, reject) => {
        server.close((err) => (err ? reject(err) : resolveClose()));
        server.closeAllConnections();
      }),
  };
}

async function serveStatic(req: IncomingMessage, res: ServerResponse, root: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('Method not allowed\n');
    return;
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(`http://x${req.url ?? '/'}`).pathname);
  } catch {
    return notFound(res);
  }
  if (pathname.includes('\0')) return notFound(res);
  let file = resolve(join(root, pathname));
  if (file !== root && !file.startsWith(root + sep)) return notFound(res);
  let info = await stat(file).catch(() => undefined);
  if (info?.isDirectory()) {
    file = join(file, 'index.html');
    info = await stat(file).catch(() => undefined);
  }
  if (!info?.isFile()) {
    // A client-side route (no extension) gets the app; a missing asset is a real 404.
    if (extname(pathname) !== '') return notFound(res);
    file = join(root, 'index.html');
    info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return notFound(res);
  }
  const immutable = pathname.startsWith(IMMUTABLE_PREFIX);
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': String(info.size),
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    'last-modified': info.mtime.toUTCString(),
    'x-content-type-options': 'nosniff',
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = createReadStream(file);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function processMetrics(): string[] {
  return [
    '# HELP process_resident_memory_bytes Resident memory size in bytes.',
    '# TYPE process_resident_memory_bytes gauge',
    `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
  ];
}

/**
 * The last line of defence: log and keep serving. Every known path is handled where it happens
 * (see node-fetch.ts, handler.ts); reaching this is a bug to fix, not a way to run.
 */
export function installSafetyNet(): void {
  const report = (event: string) => (err: unknown) => {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', event, error })}\n`);
  };
  process.on('uncaughtException', report('uncaughtException'));
  process.on('unhandledRejection', report('unhandledRejection'));
}

function notFound(res: ServerResponse): void {
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('Not found\n');
}

async function main(): Promise<void> {
  let config: ProxyConfig;
  try {
    config = await loadConfig();
  } catch (err) {
    console.error(err instanceof ProxyConfigError ? err.message : err);
    process.exit(2);
  }
  // LONGSHORE_STATIC_DIR serves another build (the benchmark serves its own fresh one).
  const staticDir = process.env['LONGSHORE_STATIC_DIR'] || fileURLToPath(new URL('../../dist/', import.meta.url));
  if (!(await stat(join(staticDir, 'index.html')).catch(() => undefined))) {
    console.warn(`warning: ${staticDir} has no index.html; run "npm run build" first (the proxy works regardless).`);
  }
  installSafetyNet();
  const out = batched((text) => process.stdout.write(text));
  const running = await startServer(config, { staticDir, log: jsonLines(out.write) });
  console.log(`longshore listening on ${running.url}`);
  const stop = () => {
    const exit = (code: number) => () => {
      out.flush(); // the lines of requests cut by closing, too
      process.exit(code);
    };
    running.close().then(exit(0), exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
