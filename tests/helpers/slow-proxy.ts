// A forwarding proxy that drips blob bodies slowly, so a test can act mid-download (cancel).
// Everything else passes through unchanged. Test-only.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SlowProxy {
  host: string;
  url: string;
  close(): Promise<void>;
}

export async function startSlowProxy(target: string, bytesPerTick = 8 * 1024, tickMs = 100): Promise<SlowProxy> {
  const upstream = new URL(target);
  const server: Server = createServer((req, res) => {
    const up = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!/\/blobs\/sha256:/.test(req.url ?? '')) {
          upRes.pipe(res);
          return;
        }
        upRes.on('data', (chunk: Buffer) => {
          upRes.pause();
          let offset = 0;
          const drip = () => {
            if (res.destroyed) return upRes.destroy();
            res.write(chunk.subarray(offset, offset + bytesPerTick));
            offset += bytesPerTick;
            if (offset < chunk.length) setTimeout(drip, tickMs);
            else upRes.resume();
          };
          drip();
        });
        upRes.on('end', () => res.end());
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
