// A relay in front of a registry that breaks blob downloads the way flaky links do: it cuts each
// large blob's first response after N bytes (the socket is destroyed), or stalls it (headers and
// N bytes, then nothing), and can cap each connection's rate. The registry's blob redirects are
// rewritten to pass through the relay too (`/__redirect/HOST:PORT/path` on a second port, so the
// redirect still leaves the registry's origin and Authorization is still dropped), so bytes served
// by the redirect target (the static server) are cut and counted as well. Range and Content-Range pass
// unchanged. Test-only.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CutRules {
  /** Blobs whose response bodies are at least this big are cut or stalled (default 1 MiB). */
  minBlobBytes?: number;
  /** Destroy the first response of each large blob after this many body bytes. */
  cutAfter?: number;
  /** Send this many body bytes of each large blob's responses, then nothing until the client gives up. */
  stallAfter?: number;
  /** Per-connection body rate cap, bytes per second. */
  bytesPerSecond?: number;
  /** Drop the Range header of blob requests, like a CDN that ignores Range (answers 200). */
  stripRange?: boolean;
}

export interface BlobTraffic {
  /** Responses started for this blob. */
  responses: number;
  /** Body bytes written to clients, over every response. */
  bytes: number;
  /** Range headers asked, in order ('' for none). */
  ranges: string[];
  cuts: number;
  stalls: number;
}

export interface CutRelay {
  /** '127.0.0.1:PORT' (loopback: clients speak http). */
  host: string;
  url: string;
  /** Read per response; change at any time. */
  rules: CutRules;
  /** By blob hex digest. */
  readonly blobs: Map<string, BlobTraffic>;
  /** Stalled responses still open: end them (destroying their sockets). */
  releaseStalls(): void;
  close(): Promise<void>;
}

const REDIRECT_PREFIX = '/__redirect/';
/** A blob by digest in a registry path, or by hex in distribution's storage layout on the redirect target. */
const BLOB_HEX = [/\/blobs\/sha256:([a-f0-9]{64})(?:$|\?)/, /\/blobs\/sha256\/[a-f0-9]{2}\/([a-f0-9]{64})\/data/];

function blobHex(path: string): string | undefined {
  for (const re of BLOB_HEX) {
    const m = re.exec(path);
    if (m) return m[1];
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startCutRelay(upstreamUrl: string, rules: CutRules = {}): Promise<CutRelay> {
  const upstream = new URL(upstreamUrl);
  const blobs = new Map<string, BlobTraffic>();
  const stalled = new Set<ServerResponse>();
  let redirectOrigin = '';

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let target = upstream;
    let path = req.url ?? '/';
    if (path.startsWith(REDIRECT_PREFIX)) {
      const rest = path.slice(REDIRECT_PREFIX.length);
      const slash = rest.indexOf('/');
      target = new URL(`http://${rest.slice(0, slash)}`);
      path = rest.slice(slash);
    }
    const hex = blobHex(path);
    const headers = { ...req.headers, host: target.host };
    if (hex !== undefined && relay.rules.stripRange) delete headers.range;
    const forward = httpRequest({ host: target.hostname, port: target.port, method: req.method, path, headers }, (up) => {
      const answer = { ...up.headers };
      const location = answer.location;
      if (location && (up.statusCode ?? 0) >= 300 && (up.statusCode ?? 0) < 400) {
        const to = new URL(location, `http://${target.host}${path}`);
        answer.location = `${redirectOrigin}${REDIRECT_PREFIX}${to.host}${to.pathname}${to.search}`;
      }
      res.writeHead(up.statusCode ?? 502, answer);
      const length = Number(up.headers['content-length'] ?? NaN);
      const body = hex !== undefined && req.method === 'GET' && (up.statusCode === 200 || up.statusCode === 206);
      if (!body) {
        up.pipe(res);
        return;
      }
      const traffic = blobs.get(hex!) ?? { responses: 0, bytes: 0, ranges: [], cuts: 0, stalls: 0 };
      blobs.set(hex!, traffic);
      traffic.responses++;
      traffic.ranges.push(typeof req.headers.range === 'string' ? req.headers.range : '');
      const large = !(length < (relay.rules.minBlobBytes ?? 1024 * 1024));
      const cutAt = large && traffic.cuts === 0 ? relay.rules.cutAfter : undefined;
      const stallAt = large ? relay.rules.stallAfter : undefined;
      if (cutAt !== undefined) traffic.cuts++;
      void (async () => {
        let sent = 0;
        for await (const chunk of up as AsyncIterable<Buffer>) {
          const limit = Math.min(cutAt ?? Infinity, stallAt ?? Infinity);
          const part = chunk.subarray(0, Math.max(0, Math.min(chunk.length, limit - sent)));
          if (part.length) {
            await new Promise<void>((resolve, reject) => res.write(part, (e) => (e ? reject(e) : resolve())));
            sent += part.length;
            traffic.bytes += part.length;
            const rate = relay.rules.bytesPerSecond;
            if (rate) await sleep((part.length / rate) * 1000);
          }
          if (cutAt !== undefined && sent >= cutAt) {
            up.destroy();
            res.destroy();
            return;
          }
          if (stallAt !== undefined && sent >= stallAt) {
            traffic.stalls++;
            up.destroy();
            stalled.add(res);
            res.once('close', () => stalled.delete(res));
            return;
          }
          if (res.destroyed) {
            up.destroy();
            return;
          }
        }
        res.end();
      })().catch(() => res.destroy());
    });
    forward.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(forward);
  };

  const listen = async (): Promise<Server> => {
    const server = createServer(handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return server;
  };
  const servers = [await listen(), await listen()];
  const host = `127.0.0.1:${(servers[0]!.address() as AddressInfo).port}`;
  redirectOrigin = `http://127.0.0.1:${(servers[1]!.address() as AddressInfo).port}`;
  const relay: CutRelay = {
    host,
    url: `http://${host}`,
    rules,
    blobs,
    releaseStalls() {
      for (const res of stalled) res.destroy();
      stalled.clear();
    },
    close: async () => {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.closeAllConnections();
              server.close(() => resolve());
            }),
        ),
      );
    },
  };
  return relay;
}
