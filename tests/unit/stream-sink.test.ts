// The pull worker's end of a streamed download (src/browser/save/stream-sink.ts): chunks travel in
// buffers the service worker hands back, so a long archive reuses a few of them instead of leaving
// one new buffer per chunk for the collector. The port is a recording stand-in (no real transfer,
// so a buffer that comes back is the very object that went out).
import { describe, expect, it } from 'vitest';
import { CHUNK_BYTES, openStreamDestination } from '../../src/browser/save/stream-sink.ts';
import type { FromSaveWorker, ToSaveWorker } from '../../src/browser/save/types.ts';

function fakePort() {
  const sent: ToSaveWorker[] = [];
  const port = {
    onmessage: null as ((e: MessageEvent<FromSaveWorker>) => void) | null,
    postMessage(m: ToSaveWorker) {
      sent.push(m);
    },
    close() {},
  };
  const answer = (m: FromSaveWorker) => port.onmessage?.({ data: m } as MessageEvent<FromSaveWorker>);
  return { port: port as unknown as MessagePort, sent, answer };
}

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed) & 0xff;
  return out;
}

describe('streamed download: the pull worker end', () => {
  it('chunks go out in buffers the service worker handed back, each holding exactly its bytes', async () => {
    const { port, sent, answer } = fakePort();
    const dest = openStreamDestination(port, { store: { getBlob: async () => undefined }, fileName: 'x.tar' });
    answer({ t: 'credit', n: 64 * CHUNK_BYTES });
    const first = pattern(3 * CHUNK_BYTES, 1);
    await dest.write(first);
    const out1 = sent.splice(0).map((m) => (m as { b: Uint8Array }).b);
    expect(out1.map((c) => c.byteLength)).toEqual([CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES]);
    // The caller's buffer is its own again (a tail hands it back to its layer worker): nothing of it was sent.
    expect(out1.every((c) => c.buffer !== first.buffer)).toBe(true);
    for (const c of out1) answer({ t: 'back', b: c.buffer as ArrayBuffer });

    const second = pattern(2 * CHUNK_BYTES + 5, 2);
    await dest.write(second);
    const out2 = sent.splice(0).map((m) => (m as { b: Uint8Array }).b);
    expect(out2.map((c) => c.byteLength)).toEqual([CHUNK_BYTES, CHUNK_BYTES, 5]);
    const reused = new Set(out1.map((c) => c.buffer));
    expect(out2.every((c) => reused.has(c.buffer))).toBe(true);
    // The reused buffers hold the new bytes, not the old ones.
    const joined = new Uint8Array(second.byteLength);
    let at = 0;
    for (const c of out2) {
      joined.set(c, at);
      at += c.byteLength;
    }
    expect(joined).toEqual(second);
  });

  it('a buffer of another size coming back is not kept', async () => {
    const { port, sent, answer } = fakePort();
    const dest = openStreamDestination(port, { store: { getBlob: async () => undefined }, fileName: 'x.tar' });
    answer({ t: 'credit', n: 8 * CHUNK_BYTES });
    const odd = new ArrayBuffer(100);
    answer({ t: 'back', b: odd });
    await dest.write(pattern(10, 3));
    const [chunk] = sent.map((m) => (m as { b: Uint8Array }).b);
    expect(chunk!.buffer).not.toBe(odd);
    expect(chunk!.buffer.byteLength).toBe(CHUNK_BYTES);
  });

  it('released() waits until the service worker has read every stored blob posted so far; the end or a failure releases the rest', async () => {
    const { port, sent, answer } = fakePort();
    const blobs = new Map([
      ['a', new Blob(['0123456789'])],
      ['b', new Blob(['01234567890123456789'])],
    ]);
    const dest = openStreamDestination(port, { store: { getBlob: async (k) => blobs.get(k) }, fileName: 'x.tar' });
    answer({ t: 'credit', n: 8 * CHUNK_BYTES });
    await expect(Promise.race([dest.released!(), 'pending'])).resolves.toBeUndefined();
    await dest.copy('a', 10);
    const afterA = dest.released!();
    await dest.copy('b', 20);
    const afterB = dest.released!();
    expect(sent.map((m) => m.t)).toEqual(['blob', 'blob']);
    const state = (p: Promise<void>) => Promise.race([p.then(() => 'released'), new Promise((r) => setTimeout(() => r('pending'), 10))]);
    expect([await state(afterA), await state(afterB)]).toEqual(['pending', 'pending']);
    answer({ t: 'read' });
    expect([await state(afterA), await state(afterB)]).toEqual(['released', 'pending']);
    answer({ t: 'read' });
    expect(await state(afterB)).toBe('released');

    // A failed download reads nothing more: whoever waits is let go.
    await dest.copy('a', 10);
    const pending = dest.released!();
    expect(await state(pending)).toBe('pending');
    await dest.abort(new Error('gone'));
    expect(await state(pending)).toBe('released');
  });
});
