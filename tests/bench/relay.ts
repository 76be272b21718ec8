// The shaping relay: an HTTP hop between the registry and both pullers (longshore's proxy and
// skopeo) that makes loopback look like a real link: a rate cap per client connection, an added
// round-trip time per request, and optionally a cut of each large blob's first response after N
// bytes, or of the connection carrying a blob when a share of it (90 %) has gone through. It
// counts what it served per blob and when its last byte left, so a run can say how many bytes
// were fetched again after cuts and how long the file took after the last byte. Bench-only (node:*).
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface LinkShape {
  /** Bytes per second per client connection (0: no cap). */
  rate: number;
  /** Added round-trip time per request, ms. */
  rttMs: number;
  /** Cut each blob's first response after this many body bytes (0: never). */
  cutAfter: number;
  /**
   * Cut once per blob of at least CUT_FRACTION_MIN_BYTES when this share of it (0.9) has been
   * served, counting all its responses: the one connection carrying the byte at that point breaks
   * (a single 200, or one of several concurrent ranges). 0: never.
   */
  cutFraction: number;
}

/** Blobs below this (the config, manifests) are never cut by a fraction. */
export const CUT_FRACTION_MIN_BYTES = 1_000_000;

export interface RelayBlobStats {
  requests: number;
  /** Body bytes sent for this blob, every response counted. */
  bytes: number;
  /** Bytes sent by responses that began after the cut: what the cut made the client fetch again. */
  afterCut: number;
  cut: boolean;
  /** The blob's full size, from Content-Length (200) or Content-Range (206); 0 until a response said. */
  size: number;
  /** Bytes of its responses given a slot to leave (decided before the rate wait, so concurrent ranges agree on the cut). */
  claimed: number;
  /** performance.now() when its last byte was written to a client (this process's clock). */
  lastByteAt: number;
}

export interface Relay {
  host: string;
  url: string;
  shape: LinkShape;
  /** Per blob digest, since the relay started (or the last reset). */
  readonly blobs: Map<string, RelayBlobStats>;
  reset(): void;
  close(): Promise<void>;
}

const BLOB = /\/blobs\/(sha256:[a-f0-9]{64})$/;

/** "20MB/s" → bytes/s; "40ms" → ms; "50MB" → bytes (decimal units, as the bench's sizes). */
export function parseLink(text: string): LinkShape {
  const shape: LinkShape = { rate: 0, rttMs: 0, cutAfter: 0, cutFraction: 0 };
  const bytes = (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(v.trim());
    if (!m) throw new Error(`--link: cannot read the size "${v}"`);
    return Math.round(Number(m[1]) * { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[(m[2] ?? 'B').toUpperCase() as 'B']);
  };
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [key, value = ''] = part.split('=');
    if (key === 'rate') shape.rate = bytes(value.replace(/\/s$/i, ''));
    else if (key === 'rtt') shape.rttMs = Number(value.replace(/ms$/i, ''));
    else if (key === 'cut' && value.trim().endsWith('%')) {
      const percent = Number(value.trim().slice(0, -1));
      if (!(percent > 0 && percent < 100)) throw new Error(`--link: cut=N% needs 0 < N < 100, got ${value}`);
      shape.cutFraction = percent / 100;
    } else if (key === 'cut') shape.cutAfter = bytes(value);
    else throw new Error(`--link: unknown "${key}" (rate=20MB/s,rtt=40ms,cut=50MB or cut=90%)`);
    if (Number.isNaN(shape.rttMs)) throw new Error(`--link: rtt must be a number of ms, got ${value}`);
  }
  return shape;
}

export function describeLink(shape: LinkShape): string {
  const parts = [
    shape.rate ? `${(shape.rate / 1e6).toFixed(shape.rate < 1e7 ? 1 : 0)} MB/s per connection` : 'no rate cap',
    `${shape.rttMs} ms added RTT`,
  ];
  if (shape.cutAfter) parts.push(`each blob's first response cut after ${(shape.cutAfter / 1e6).toFixed(0)} MB`);
  if (shape.cutFraction) parts.push(`each blob over 1 MB cut once at ${(shape.cutFraction * 100).toFixed(0)} % of it`);
  return parts.join(', ');
}

export async function startRelay(target: string, shape: LinkShape): Promise<Relay> {
  const upstream = new URL(target);
  const blobs = new Map<string, RelayBlobStats>();
  // Per client connection: when its next byte may leave (the rate cap is per connection, as a
  // CDN or a congested path shapes each TCP stream).
  const nextFree = new WeakMap<Socket, number>();
  const relay: Relay = {
    host: '',
    url: '',
    shape,
    blobs,
    reset: () => blobs.clear(),
    close: async () => undefined,
  };

  const pump = async (
    up: IncomingMessage,
    res: ServerResponse,
    socket: Socket,
    stats: RelayBlobStats | undefined,
    cutAt: number | undefined,
  ) => {
    let sent = 0;
    const afterCut = stats?.cut ?? false;
    for await (const chunk of up as AsyncIterable<Buffer>) {
      let piece = chunk;
      if (cutAt !== undefined && sent + piece.length > cutAt) piece = piece.subarray(0, cutAt - sent);
      // The fraction cut is decided here, before any wait, so two ranges of one blob cannot both take it.
      let cutHere = cutAt !== undefined && sent + piece.length >= cutAt;
      if (stats && !stats.cut && relay.shape.cutFraction > 0 && stats.size >= CUT_FRACTION_MIN_BYTES) {
        // Rounded up, so what is left after the cut is at most (1 − fraction) of the blob.
        const room = Math.ceil(stats.size * relay.shape.cutFraction) - stats.claimed;
        if (piece.length >= room) {
          piece = piece.subarray(0, Math.max(0, room));
          stats.cut = true;
          cutHere = true;
        }
      }
      if (stats) stats.claimed += piece.length;
      if (relay.shape.rate > 0) {
        const now = performance.now();
        const start = Math.max(now, nextFree.get(socket) ?? now);
        const done = start + (piece.length / relay.shape.rate) * 1000;
        nextFree.set(socket, done);
        if (done - now > 1) await new Promise((r) => setTimeout(r, done - now));
      }
      if (res.destroyed) return;
      if (piece.length > 0) await new Promise<void>((resolve) => (res.write(piece) ? resolve() : res.once('drain', resolve)));
      sent += piece.length;
      if (stats) {
        stats.bytes += piece.length;
        if (afterCut) stats.afterCut += piece.length;
        stats.lastByteAt = performance.now();
      }
      if (cutHere) {
        if (stats) stats.cut = true;
        up.destroy();
        // The connection closes after the bytes written so far (FIN, not RST): every byte the relay
        // counted reaches the client, so what it fetches after the cut is all the cut's cost.
        if (res.socket) res.socket.end();
        else res.destroy();
        return;
      }
    }
    res.end();
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const digest = req.method === 'GET' ? BLOB.exec(req.url ?? '')?.[1] : undefined;
    let stats: RelayBlobStats | undefined;
    if (digest) {
      stats = blobs.get(digest) ?? { requests: 0, bytes: 0, afterCut: 0, cut: false, size: 0, claimed: 0, lastByteAt: 0 };
      blobs.set(digest, stats);
      stats.requests++;
    }
    const forward = () => {
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
        },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          const length = Number(upRes.headers['content-length'] ?? NaN);
          if (stats && !stats.size) {
            // RFC 9110 §14.4: Content-Range: bytes first-last/complete-length.
            const total = /\/(\d+)$/.exec(upRes.headers['content-range'] ?? '')?.[1];
            if (upRes.statusCode === 206 && total) stats.size = Number(total);
            else if (upRes.statusCode === 200 && Number.isFinite(length)) stats.size = length;
          }
          // Only a blob's first full response is cut, and only if it is larger than the cut point.
          const cutAt =
            stats && !stats.cut && relay.shape.cutAfter > 0 && upRes.statusCode === 200 && length > relay.shape.cutAfter
              ? relay.shape.cutAfter
              : undefined;
          pump(upRes, res, req.socket, stats, cutAt).catch(() => res.destroy());
        },
      );
      up.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
      req.pipe(up);
    };
    // One added round trip per request (request out, first byte back).
    if (relay.shape.rttMs > 0) setTimeout(forward, relay.shape.rttMs);
    else forward();
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  relay.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  relay.url = `http://${relay.host}`;
  relay.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return relay;
}
