// Can a writer copy ranges of a staged OPFS file into a picked file as disk-backed Blob slices
// while the layer worker still appends to it through its sync access handle? (Following a big
// layer today moves its bytes through JavaScript: read back from the staged file, posted to the
// pull worker, written as a Uint8Array, which Chromium copies again into a data pipe.) A worker
// writes 64 MiB through a sync access handle, then five times takes getFile(), appends 1 MiB
// through the open handle (the snapshot is now older than the file), writes an 8 MiB slice of the
// snapshot into another OPFS file with FileSystemWritableFileStream.write, and keeps appending
// 1 MiB writes until that write settles; at the end it checks every MiB copied.
//   node --import tsx tests/repro/opfs-slice.ts
// Chromium 156 (2026-12-02): every round 'ok' with 5-6 MiB appended meanwhile, the copy right.
// But the same thing in a real pull failed: a follower that sent the bytes behind the hash cursor
// as slices of the staged file (up to 32 MiB, two unwritten at a time) had the picked file's
// writes fail with NotReadableError ("The requested file could not be read, typically due to
// permission problems that have occurred after a reference to a file was acquired") in every
// 1.5 GB pull on loopback. What this repro lacks to show it (timing, sizes, the handle's other
// calls) is not known yet.
import { openWorkerPage } from './worker-page.ts';

const WORKER = `
onmessage = async () => {
  const out = [];
  const root = await navigator.storage.getDirectory();
  const fh = await root.getFileHandle('staged.bin', { create: true });
  const h = await fh.createSyncAccessHandle();
  h.truncate(0);
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < 64; i++) h.write(chunk.fill(i), { at: i << 20 });
  const dst = await (await root.getFileHandle('picked.bin', { create: true })).createWritable();
  for (let round = 0; round < 5; round++) {
    const slice = (await fh.getFile()).slice(round << 23, (round + 1) << 23);
    h.write(chunk.fill(201), { at: h.getSize() });
    await new Promise((r) => setTimeout(r, 20));
    let writing = true;
    let appended = 0;
    const w = dst.write({ type: 'write', position: round << 23, data: slice }).then(
      () => 'ok',
      (e) => e.name + ': ' + e.message,
    ).finally(() => (writing = false));
    while (writing) {
      h.write(chunk.fill(200), { at: h.getSize() });
      appended++;
      await new Promise((r) => setTimeout(r, 0));
    }
    out.push('round ' + round + ': ' + (await w) + ' (' + appended + ' MiB appended meanwhile)');
  }
  await dst.close();
  const bytes = new Uint8Array(await (await (await root.getFileHandle('picked.bin')).getFile()).arrayBuffer());
  let right = bytes.length === 5 << 23;
  for (let i = 0; right && i < bytes.length; i += 1 << 20) right = bytes[i] === i >> 20;
  out.push('copied ' + bytes.length + ' bytes, ' + (right ? 'right' : 'WRONG'));
  h.close();
  postMessage(out);
};`;

const { page, close } = await openWorkerPage(WORKER, 'opfs-slice');
try {
  const lines = await page.evaluate(
    () =>
      new Promise<string[]>((resolve) => {
        const w = new Worker('/worker.js');
        w.onmessage = (e: MessageEvent<string[]>) => resolve(e.data);
        w.postMessage(0);
      }),
  );
  for (const line of lines) console.log(line);
} finally {
  await close();
}
