// What does writing bytes (not a Blob) into a picked file cost Chromium, by chunk size? Following
// a big layer writes its bytes with FileSystemWritableFileStream.write(Uint8Array); in the 1.5 GB
// loopback bench Chromium then took 300k-430k page faults (a fault costs ~14 µs on this machine,
// README "What a byte costs here"), against ~26k for the 400 MB link pull, which follows nothing.
// A worker writes 256 MiB into an OPFS file (one reused buffer, the file sized first, as
// file-sink.ts does) with each chunk size in turn; node sums the minor faults and CPU of every
// Chromium process (/proc) around each run, and the worker reports its wall time.
//   node --import tsx tests/repro/writable-chunks.ts
import { createServer } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const TOTAL = 256 * 1024 * 1024;
const SIZES = [4 << 20, 2 << 20, 1 << 20, 960 << 10, 512 << 10, 256 << 10];

const WORKER = `
onmessage = async (e) => {
  const { size, total, blob } = e.data;
  const root = await navigator.storage.getDirectory();
  const fh = await root.getFileHandle('picked.bin', { create: true });
  const w = await fh.createWritable();
  await w.truncate(total);
  const buf = new Uint8Array(size);
  const t0 = performance.now();
  for (let at = 0; at < total; at += size) {
    buf[0] = at & 0xff;
    await w.write({ type: 'write', position: at, data: blob ? new Blob([buf]) : buf });
  }
  await w.close();
  postMessage(performance.now() - t0);
};`;

/** Minor faults and CPU seconds summed over the Chromium processes (children of `root` included). */
function chromiumCounters(): { faults: number; cpu: number } {
  let faults = 0;
  let cpu = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('/usr/lib/chromium/chromium') && !cmd.startsWith('/usr/bin/chromium')) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      faults += Number(f[7]);
      cpu += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone
    }
  }
  return { faults, cpu };
}

const server = createServer((req, res) => {
  if (req.url === '/worker.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(WORKER);
  else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>writable-chunks</title>');
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as { port: number };
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.evaluate(() => {
    (globalThis as unknown as { w: Worker }).w = new Worker('/worker.js');
  });
  const rounds = Number(process.env['ROUNDS'] ?? 2);
  for (let round = 0; round < rounds; round++) {
    for (const blob of [false, true]) {
      for (const size of SIZES) {
        const before = chromiumCounters();
        const ms = await page.evaluate(
          (msg) =>
            new Promise<number>((resolve) => {
              const w = (globalThis as unknown as { w: Worker }).w;
              w.onmessage = (e: MessageEvent<number>) => resolve(e.data);
              w.postMessage(msg);
            }),
          { size, total: TOTAL, blob },
        );
        const after = chromiumCounters();
        const faults = after.faults - before.faults;
        console.log(
          `${blob ? 'Blob' : 'bytes'} ${String(size >> 10).padStart(5)} KiB: ${(ms / 1000).toFixed(2)} s, ` +
            `Chromium CPU ${(after.cpu - before.cpu).toFixed(2)} s, ${faults} faults (${((faults * 4096) / TOTAL).toFixed(2)} per 4 KiB written)`,
        );
      }
    }
  }
} finally {
  await browser.close();
  server.close();
}
