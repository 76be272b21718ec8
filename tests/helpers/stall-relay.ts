// A relay on 127.0.0.1 in front of a real registry that can stop answering mid-pull: `stall`
// names what it then holds forever (a manifest request, or a layer after its first bytes).
// Everything else passes through. Test-only.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type StallMode = 'none' | 'manifests' | 'layers';

export interface StallRelay {
  host: string;
  url: string;
  /** What to hold from now on; `layers` holds blobs whose digest is in `digests`. */
  stall(mode: StallMode, digests?: string[]): void;
  close(): Promise<void>;
}

export async function startStallRelay(target: string): Promise<StallRelay> {
  const upstream = new URL(target);
  let mode: StallMode = 'none';
  let held = new Set<string>();
  const holding = new Set<import('node:http').ServerResponse>();
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '';
    if (mode === 'manifests' && /\/manifests\//.test(url)) {
      holding.add(res); // never answered
      return;
    }
    const layer = mode === 'layers' && [...held].some((d) => url.includes(`/blobs/${d}`));
    const up = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: url, headers: { ...req.headers, host: upstream.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!layer) return void upRes.pipe(res);
        // Headers and the first chunk, then silence with the connection open.
        holding.add(res);
        upRes.once('data', (chunk: Buffer) => {
          res.write(chunk.subarray(0, Math.min(chunk.length, 1024)));
          upRes.pause();
        });
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
    stall(m, digests = []) {
      // Coming back drops what was held (as a restarted registry would).
      if (m === 'none') for (const r of holding) r.destroy();
      if (m === 'none') holding.clear();
      mode = m;
      held = new Set(digests);
    },
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
