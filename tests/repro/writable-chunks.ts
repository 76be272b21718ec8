// What does writing bytes (not a Blob) into a picked file cost Chromium, by chunk size? Following
// a big layer writes its bytes with FileSystemWritableFileStream.write(Uint8Array); in the 1.5 GB
// loopback bench Chromium then took 300k-430k page faults (a fault costs ~14 µs on this machine,
// README "What a byte costs here"), against ~26k for the 400 MB link pull, which follows nothing.
// A worker writes 256 MiB into an OPFS file (one reused buffer, the file sized first, as
// file-sink.ts does) with each chunk size in turn; node sums the minor faults and CPU of every
// Chromium process (/proc) around each run, and the worker reports its wall time. Kinds: `bytes`
// (a Uint8Array, as the follower writes), `blob` (a Blob made of those bytes in JS), `disk`
// (slices of a File in OPFS, as a piece or a stored blob is copied).
//   node --import tsx tests/repro/writable-chunks.ts
import { readdirSync, readFileSync } from 'node:fs';
import { openWorkerPage } from './worker-page.ts';

const TOTAL = 256 * 1024 * 1024;
const SIZES = [4 << 20, 2 << 20, 1 << 20, 960 << 10, 512 << 10, 256 << 10];

const WORKER = `
let source;
onmessage = async (e) => {
  const { size, total, kind } = e.data;
  const root = await navigator.storage.getDirectory();
  if (kind === 'disk' && !source) {
    // A disk-backed File, as a stored blob or a completed piece is: written once through a sync handle.
    const sh = await root.getFileHandle('source.bin', { create: true });
    const h = await sh.createSyncAccessHandle();
    const fill = new Uint8Array(4 << 20).fill(7);
    for (let at = 0; at < total; at += fill.length) h.write(fill, { at });
    h.close();
    source = await sh.getFile();
    if (e.data.prepare) return postMessage(0);
  }
  const fh = await root.getFileHandle('picked.bin', { create: true });
  const w = await fh.createWritable();
  await w.truncate(total);
  const buf = new Uint8Array(size);
  const t0 = performance.now();
  for (let at = 0; at < total; at += size) {
    buf[0] = at & 0xff;
    const data = kind === 'disk' ? source.slice(at, at + size) : kind === 'blob' ? new Blob([buf]) : buf;
    await w.write({ type: 'write', position: at, data });
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

const { page, close } = await openWorkerPage(WORKER, 'writable-chunks');
try {
  await page.evaluate(() => {
    (globalThis as unknown as { w: Worker }).w = new Worker('/worker.js');
  });
  const run = (msg: { size: number; total: number; kind: string; prepare?: boolean }) =>
    page.evaluate(
      (m) =>
        new Promise<number>((resolve) => {
          const w = (globalThis as unknown as { w: Worker }).w;
          w.onmessage = (e: MessageEvent<number>) => resolve(e.data);
          w.postMessage(m);
        }),
      msg,
    );
  const rounds = Number(process.env['ROUNDS'] ?? 2);
  for (let round = 0; round < rounds; round++) {
    // The source file of `disk` is written before any counting.
    await run({ size: 0, total: TOTAL, kind: 'disk', prepare: true });
    for (const kind of ['bytes', 'blob', 'disk'] as const) {
      for (const size of kind === 'disk' ? [32 << 20, 4 << 20, 32 << 20] : SIZES) {
        const before = chromiumCounters();
        const ms = await run({ size, total: TOTAL, kind });
        const after = chromiumCounters();
        const faults = after.faults - before.faults;
        console.log(
          `${kind.padEnd(5)} ${String(size >> 10).padStart(5)} KiB: ${(ms / 1000).toFixed(2)} s, ` +
            `Chromium CPU ${(after.cpu - before.cpu).toFixed(2)} s, ${faults} faults (${((faults * 4096) / TOTAL).toFixed(2)} per 4 KiB written)`,
        );
      }
    }
  }
} finally {
  await close();
}
