// The load test's upstreams, in their own process so that autocannon's work does not slow them
// down: a registry (a manifest; a generated blob of BLOB_MB MiB), another registry, and one that
// accepts connections and never answers. Prints {"registry","other","hung"} hosts as one line.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const BLOB_MB = Number(process.env['BLOB_MB'] ?? 100);
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);
export const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { digest: `sha256:${'c'.repeat(64)}`, size: 1000 },
  layers: Array.from({ length: 8 }, (_, i) => ({ digest: `sha256:${String(i).repeat(64)}`, size: 1e7 })),
});

function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server: Server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

const registry = await listen((req, res) => {
  if (req.url?.includes('/blobs/')) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BLOB_MB * CHUNK.length) });
    let sent = 0;
    const pump = () => {
      while (sent < BLOB_MB) {
        sent++;
        if (!res.write(CHUNK)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => (sent = BLOB_MB));
    pump();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': `sha256:${'d'.repeat(64)}` });
  res.end(MANIFEST);
});
const other = await listen((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(MANIFEST);
});
const hung = await listen(() => undefined);
console.log(JSON.stringify({ registry, other, hung }));
