// A misbehaving hop in front of a real registry, for the failure paths a healthy registry never takes:
// corrupted, truncated or stalled blob bodies, corrupted manifests, and 429/503 answers before the real one.
// Everything not matched by a rule is forwarded unchanged. Test-only: uses node:* freely.
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TamperRules {
  /** Flip one byte (at `offset`, default the middle) of every body served for this blob; Content-Length is kept. */
  corruptBlob?: {
    digest: string;
    offset?: number;
    /** Only the first `times` bodies (default every one). */ times?: number;
    /** Pause this long before sending the flipped byte (what comes before it reaches the client first). */ pauseMs?: number;
  };
  /**
   * Send only the first `keepBytes` of this blob. `close`: announce the full Content-Length, then drop the
   * connection; `short`: send no Content-Length (chunked) and end cleanly after the short body.
   */
  truncateBlob?: { digest: string; keepBytes: number; mode: 'close' | 'short' };
  /**
   * Send the headers and the first `afterBytes` of this blob, then nothing more until the proxy
   * closes. With `rangeStart`, only the range response (206) whose Content-Range starts there is
   * stalled (other ranges, and whole answers, pass).
   */
  stallBlob?: { digest: string; afterBytes: number; rangeStart?: number };
  /** Flip one byte in the middle of every manifest body (headers such as Docker-Content-Digest kept). */
  corruptManifests?: boolean;
  /**
   * Answer the next `count` manifest requests with `status` (and `Retry-After`) instead of forwarding them;
   * `html`: with a text/html error page, as a corporate proxy or a load balancer in front of a registry sends.
   */
  failManifests?: { status: number; count: number; retryAfter?: string; html?: boolean };
  /** Extra headers on every forwarded manifest response (Docker Hub's RateLimit-Limit / RateLimit-Remaining). */
  manifestHeaders?: Record<string, string>;
  /** Rewrites the realm="…" of the upstream's WWW-Authenticate, to send clients to another token service path. */
  challengeRealm?: string;
  /**
   * Pages tags/list as distribution v3, Docker Hub or ghcr.io do (distribution 2.8 sends every tag at once,
   * unsorted): tags sorted, at most `n` after `last`, and `Link: <…?n=…&last=…>; rel="next"` while more remain.
   * `maxPage` caps `n` like a registry that sends fewer than asked.
   */
  paginateTags?: { maxPage?: number };
}

export interface TamperRecord {
  method: string;
  path: string;
  /** What the proxy did: 'forward', 'corrupt', 'truncate', 'stall', 'fail'. */
  action: string;
  /** The Authorization header the client sent, if any (to prove where credentials went). */
  authorization?: string;
}

export interface TamperProxy {
  /** '127.0.0.1:PORT', to put in an image reference (loopback, so the client speaks http). */
  host: string;
  url: string;
  /** Change at any time; read per request. */
  rules: TamperRules;
  readonly requests: TamperRecord[];
  close(): Promise<void>;
}

const BLOB_PATH = /^\/v2\/.+\/blobs\/(sha256:[a-f0-9]{64})$/;
const MANIFEST_PATH = /^\/v2\/.+\/manifests\/[^/]+$/;
const TAGS_PATH = /^(\/v2\/.+\/tags\/list)(?:\?(.*))?$/;
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length'];

function withoutLength(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  for (const name of HOP_BY_HOP) delete out[name];
  return out;
}

/** Rewrites a body in flight, one chunk at a time, flipping the byte at `offset` (counted over the whole body). */
async function pumpFlipping(upstream: IncomingMessage, res: ServerResponse, offset: number, pauseMs = 0): Promise<void> {
  let seen = 0;
  for await (const chunk of upstream as AsyncIterable<Buffer>) {
    let out = chunk;
    if (offset >= seen && offset < seen + chunk.length) {
      out = Buffer.from(chunk);
      out[offset - seen] = out[offset - seen]! ^ 0xff;
      if (pauseMs > 0) {
        await new Promise<void>((resolve) => res.write(out.subarray(0, offset - seen), () => resolve()));
        out = out.subarray(offset - seen);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    }
    seen += chunk.length;
    res.write(out);
  }
  res.end();
}

/** Sends at most `limit` bytes of the body and returns once they have reached the socket (the rest is drained). */
async function pumpPrefix(upstream: IncomingMessage, res: ServerResponse, limit: number): Promise<void> {
  let sent = 0;
  for await (const chunk of upstream as AsyncIterable<Buffer>) {
    const take = Math.max(0, Math.min(chunk.length, limit - sent));
    if (take > 0) {
      await new Promise<void>((resolve, reject) => res.write(chunk.subarray(0, take), (error) => (error ? reject(error) : resolve())));
      sent += take;
    }
  }
}

export async function startTamperProxy(upstreamUrl: string, rules: TamperRules = {}): Promise<TamperProxy> {
  const upstream = new URL(upstreamUrl);
  const requests: TamperRecord[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    const blob = BLOB_PATH.exec(path)?.[1];
    const isManifest = MANIFEST_PATH.test(path);
    const record: TamperRecord = { method: req.method ?? 'GET', path, action: 'forward' };
    if (req.headers.authorization) record.authorization = req.headers.authorization;
    requests.push(record);

    const fail = proxy.rules.failManifests;
    if (isManifest && fail && fail.count > 0) {
      fail.count--;
      record.action = 'fail';
      const body = fail.html
        ? `<!DOCTYPE html><html><head><title>${fail.status} Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream server.</p><hr><address>nginx</address></body></html>`
        : fail.status === 429
          ? JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down', detail: {} }] })
          : 'upstream busy';
      res.writeHead(fail.status, {
        'content-type': fail.html ? 'text/html; charset=utf-8' : fail.status === 429 ? 'application/json' : 'text/plain',
        'content-length': Buffer.byteLength(body),
        ...(fail.retryAfter ? { 'retry-after': fail.retryAfter } : {}),
      });
      res.end(body);
      return;
    }

    const tagsPath = TAGS_PATH.exec(path);
    if (tagsPath && proxy.rules.paginateTags && req.method === 'GET') {
      record.action = 'paginate';
      const query = new URLSearchParams(tagsPath[2] ?? '');
      const up = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: 'GET',
          path: tagsPath[1],
          headers: { ...req.headers, host: upstream.host },
        },
        async (upRes) => {
          const chunks: Buffer[] = [];
          for await (const chunk of upRes as AsyncIterable<Buffer>) chunks.push(chunk);
          const body = Buffer.concat(chunks);
          if (upRes.statusCode !== 200) {
            res.writeHead(upRes.statusCode ?? 502, withoutLength(upRes.headers)).end(body);
            return;
          }
          const all = ((JSON.parse(body.toString('utf8')) as { name: string; tags: string[] | null }).tags ?? []).slice().sort();
          const name = (JSON.parse(body.toString('utf8')) as { name: string }).name;
          const last = query.get('last');
          const asked = Number(query.get('n') ?? all.length);
          const n = Math.min(asked, proxy.rules.paginateTags?.maxPage ?? asked);
          const from = last === null ? 0 : all.findIndex((t) => t > last);
          const page = from < 0 ? [] : all.slice(from, from + n);
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (from >= 0 && from + n < all.length)
            headers['link'] = `<${tagsPath[1]}?n=${asked}&last=${encodeURIComponent(page.at(-1)!)}>; rel="next"`;
          res.writeHead(200, headers).end(JSON.stringify({ name, tags: page }));
        },
      );
      up.on('error', () => res.writeHead(502).end());
      up.end();
      return;
    }

    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path, headers: { ...req.headers, host: upstream.host } },
      (up) => {
        const status = up.statusCode ?? 502;
        const { corruptBlob, truncateBlob, stallBlob, corruptManifests } = proxy.rules;
        const ok = status === 200 && req.method === 'GET';
        const length = Number(up.headers['content-length'] ?? NaN);
        const run = async (): Promise<void> => {
          if (ok && blob !== undefined && corruptBlob?.digest === blob && (corruptBlob.times === undefined || corruptBlob.times-- > 0)) {
            record.action = 'corrupt';
            res.writeHead(status, up.headers);
            await pumpFlipping(up, res, corruptBlob.offset ?? Math.floor(length / 2), corruptBlob.pauseMs);
          } else if (ok && blob !== undefined && truncateBlob?.digest === blob) {
            record.action = 'truncate';
            if (truncateBlob.mode === 'close') {
              res.writeHead(status, up.headers);
              await pumpPrefix(up, res, truncateBlob.keepBytes);
              res.destroy();
            } else {
              res.writeHead(status, withoutLength(up.headers));
              await pumpPrefix(up, res, truncateBlob.keepBytes);
              res.end();
            }
          } else if (
            req.method === 'GET' &&
            blob !== undefined &&
            stallBlob?.digest === blob &&
            (stallBlob.rangeStart === undefined
              ? status === 200
              : status === 206 && Number(/^bytes (\d+)-/.exec(String(up.headers['content-range'] ?? ''))?.[1]) === stallBlob.rangeStart)
          ) {
            record.action = 'stall';
            res.writeHead(status, up.headers);
            res.flushHeaders();
            await pumpPrefix(up, res, stallBlob.afterBytes);
            // Nothing more: the response stays open until the client gives up or the proxy closes.
          } else if (ok && isManifest && corruptManifests) {
            record.action = 'corrupt';
            res.writeHead(status, up.headers);
            await pumpFlipping(up, res, Math.floor(length / 2));
          } else {
            const headers = isManifest ? { ...up.headers, ...proxy.rules.manifestHeaders } : { ...up.headers };
            const realm = proxy.rules.challengeRealm;
            if (realm && typeof headers['www-authenticate'] === 'string')
              headers['www-authenticate'] = headers['www-authenticate'].replace(/realm="[^"]*"/, `realm="${realm}"`);
            res.writeHead(status, headers);
            up.pipe(res);
          }
        };
        run().catch(() => res.destroy());
      },
    );
    forward.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(forward);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const proxy: TamperProxy = {
    host,
    url: `http://${host}`,
    rules,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
