// Small in-process HTTP servers on 127.0.0.1:0 standing in for a registry, a token service or a
// CDN. Each records the requests it saw (method, path, headers) for the test to judge.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FakeServer {
  /** `127.0.0.1:PORT` */
  host: string;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  port: number;
  requests: Recorded[];
  close(): Promise<void>;
}

export async function startFake(handle: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<FakeServer> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    Promise.resolve(handle(req, res)).catch((err: unknown) => {
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const fake = await startFake((_req, res) => {
    res.end();
  });
  await fake.close();
  return fake.port;
}

/** Deterministic pseudo-random bytes (xorshift), so bodies are not trivially compressible. */
export function bytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function sha256(data: Uint8Array | ArrayBuffer): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', data instanceof Uint8Array ? (data.slice().buffer as ArrayBuffer) : data);
  return `sha256:${Buffer.from(digest).toString('hex')}`;
}
