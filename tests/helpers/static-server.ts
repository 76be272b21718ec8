// The "CDN" that the token registry's blob GETs redirect to (distribution's `redirect` storage middleware
// builds `baseurl` + storage path). Serves the shared storage root read-only on its own origin and records
// every request's headers so tests can prove no registry credential leaks across the redirect.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve, sep } from 'node:path';

export interface StaticRequestRecord {
  seq: number;
  time: string;
  method: string;
  /** Path and query as requested. */
  url: string;
  /** All request headers, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  status: number;
}

export interface StaticServerOptions {
  root: string;
  /**
   * Answer a request that carries `Authorization` with 400, as S3 does for a presigned URL ("Only one auth
   * mechanism allowed"). Default true: a leaked token shows up as a failed pull, not only in the log.
   */
  rejectAuthorization?: boolean;
}

export const STATIC_HARNESS_LOG_PATH = '/__harness/requests';

export interface StaticServer {
  origin: string;
  /** Live request log, oldest first. */
  readonly requests: StaticRequestRecord[];
  clearLog(): void;
  close(): Promise<void>;
}

function parseRange(header: string, size: number): { start: number; end: number } | null | 'invalid' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null; // Multi-range and other units: ignore the header and send everything (RFC 9110 §14.2).
  const [, from, to] = match;
  if (from === '' && to === '') return 'invalid';
  let start: number;
  let end: number;
  if (from === '') {
    start = Math.max(0, size - Number(to));
    end = size - 1;
  } else {
    start = Number(from);
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
  }
  if (start >= size || start > end) return 'invalid';
  return { start, end };
}

export async function startStaticServer(options: StaticServerOptions): Promise<StaticServer> {
  const root = resolve(options.root);
  const rejectAuthorization = options.rejectAuthorization ?? true;
  const requests: StaticRequestRecord[] = [];
  let seq = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://static.invalid');
    if (url.pathname === STATIC_HARNESS_LOG_PATH) {
      const since = Number(url.searchParams.get('since') ?? '0');
      const body = JSON.stringify(requests.filter((r) => r.seq > since));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
      return;
    }
    const record: StaticRequestRecord = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: { ...req.headers },
      status: 0,
    };
    requests.push(record);
    const fail = (status: number, message: string): void => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(message);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    if (rejectAuthorization && req.headers.authorization !== undefined)
      return fail(400, 'InvalidArgument: Only one auth mechanism allowed');
    const file = resolve(root, `.${decodeURIComponent(url.pathname)}`);
    if (!file.startsWith(root + sep)) return fail(403, 'forbidden');
    const info = await stat(file).catch(() => null);
    if (!info?.isFile()) return fail(404, 'not found');

    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      'cache-control': 'max-age=1500',
    };
    const range = typeof req.headers.range === 'string' ? parseRange(req.headers.range, info.size) : null;
    if (range === 'invalid') {
      record.status = 416;
      res.writeHead(416, { 'content-range': `bytes */${info.size}` });
      res.end();
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? info.size - 1;
    record.status = range ? 206 : 200;
    res.writeHead(record.status, {
      ...headers,
      'content-length': end - start + 1,
      ...(range ? { 'content-range': `bytes ${start}-${end}/${info.size}` } : {}),
    });
    if (req.method === 'HEAD' || info.size === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500);
        res.end();
      } else res.destroy();
    });
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolveListen());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    requests,
    clearLog() {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      }),
  };
}
