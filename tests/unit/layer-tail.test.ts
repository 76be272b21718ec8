// The archive written behind the hash cursor (src/browser/layer-tail.ts): both halves over a real
// MessageChannel, the partial an in-memory stand-in for OpfsPartial (the real one is followed in
// tests/e2e/save.test.ts and the bench).
import { describe, expect, it } from 'vitest';
import {
  BlobTail,
  LiveJob,
  TAIL_CHUNK_BYTES,
  TAIL_CREDIT_BYTES,
  TAIL_FLUSH_MS,
  type FollowablePartial,
} from '../../src/browser/layer-tail.ts';
import { LongshoreError } from '../../src/core/errors.ts';
import { pseudoRandomBytes } from '../helpers/fixtures.ts';
import { rejection } from '../helpers/assert.ts';

class FakePartial implements FollowablePartial {
  phase: FollowablePartial['phase'] = 'open';
  offset = 0;
  readonly #watchers = new Set<() => void>();
  constructor(readonly bytes: Uint8Array) {}
  readAt(into: Uint8Array, at: number): number {
    const n = Math.min(into.byteLength, this.offset - at);
    into.set(this.bytes.subarray(at, at + n));
    return n;
  }
  watch(listener: () => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }
  set(change: Partial<Pick<FakePartial, 'phase' | 'offset'>>): void {
    Object.assign(this, change);
    for (const w of [...this.#watchers]) w();
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

function follow(job: LiveJob) {
  const channel = new MessageChannel();
  job.follow(channel.port2);
  return new BlobTail(channel.port1, 'layer 1/1');
}

/** Everything the tail gives until its end, written at once, and in how many chunks. */
async function readAll(tail: BlobTail): Promise<{ bytes: Buffer; verified: number; chunks: number }> {
  const out: Buffer[] = [];
  for (;;) {
    const m = await tail.next();
    if ('verified' in m) return { bytes: Buffer.concat(out), verified: m.verified, chunks: out.length };
    if ('piece' in m) throw new Error('a piece to a writer that did not ask for them');
    out.push(Buffer.from(m.bytes));
    tail.taken(m.bytes, m.bytes.byteLength);
  }
}

/** A spill of bytes held in memory that can give them as a Blob (as the OPFS one does from its file). */
function memorySpill() {
  const chunks: Uint8Array[] = [];
  let resets = 0;
  const spill = {
    transient: true as const,
    get size() {
      return chunks.reduce((n, c) => n + c.byteLength, 0);
    },
    write: async (c: Uint8Array) => void chunks.push(c.slice()),
    read: async () => new Blob(chunks as BlobPart[]).stream(),
    snapshot: async () => new Blob(chunks as BlobPart[]),
    reset: async () => {
      chunks.length = 0;
      resets++;
    },
    discard: async () => undefined,
  };
  return { spill, resets: () => resets };
}

/** A blob of `chunks` tail chunks being written, followed by a writer that takes pieces. */
async function piecesWriter(chunks: number, seed: string) {
  const blob = pseudoRandomBytes(chunks * TAIL_CHUNK_BYTES, seed);
  const partial = Object.assign(new FakePartial(blob), { size: blob.byteLength });
  const job = new LiveJob();
  const channel = new MessageChannel();
  job.follow(channel.port2);
  const tail = new BlobTail(channel.port1, 'layer 1/1', undefined, true);
  job.attach(partial);
  await tick();
  return { blob, partial, job, tail };
}

/** The bytes in order until the blob's end, each checked against `blob` and taken: where each began and how long. */
async function bytesToEnd(tail: BlobTail, blob: Uint8Array): Promise<{ at: number; length: number }[]> {
  const got: { at: number; length: number }[] = [];
  for (let end = 0; end < blob.byteLength;) {
    const m = await tail.next();
    if (!('bytes' in m)) throw new Error(`expected bytes, got ${JSON.stringify(m)}`);
    expect(Buffer.compare(Buffer.from(m.bytes), Buffer.from(blob.subarray(m.at, m.at + m.bytes.byteLength)))).toBe(0);
    got.push({ at: m.at, length: m.bytes.byteLength });
    end = m.at + m.bytes.byteLength;
    tail.taken(m.bytes, m.bytes.byteLength);
  }
  return got;
}

/** The blob commits: the tail's last answer says it is verified whole. */
async function verifiedAtEnd(partial: FakePartial, tail: BlobTail, blob: Uint8Array): Promise<void> {
  partial.set({ phase: 'committing' });
  partial.set({ phase: 'committed' });
  expect(await tail.next()).toEqual({ verified: blob.byteLength });
}

describe('layer tail, pieces (a writer that places ranges itself)', () => {
  it('a completed spilled range goes as a Blob piece, the bytes in order skip it, and the spill is reused only once the piece is written', async () => {
    const { blob, partial, job, tail } = await piecesWriter(3, 'pieces');
    // The range [1 chunk, 2 chunks) arrived ahead of the cursor, in a spill, complete.
    const { spill, resets } = memorySpill();
    const watched = job.watchSpill(spill);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES));
    watched.completed!(TAIL_CHUNK_BYTES);
    const first = await tail.next();
    if (!('piece' in first)) throw new Error('expected a piece first');
    expect(first.piece.start).toBe(TAIL_CHUNK_BYTES);
    expect(
      Buffer.compare(Buffer.from(await first.piece.blob.arrayBuffer()), Buffer.from(blob.subarray(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES))),
    ).toBe(0);
    // Its spill waits for the writer before it takes another range.
    let reset = false;
    const resetting = watched.reset!().then(() => (reset = true));
    await tick();
    expect(reset).toBe(false);
    tail.pieceDone(first.piece.id);
    await resetting;
    expect(resets()).toBe(1);
    // The hash cursor passes the whole blob: the bytes in order are [0, 1 chunk) and [2, 3 chunks), with their offsets.
    partial.set({ offset: blob.byteLength });
    expect(await bytesToEnd(tail, blob)).toEqual([
      { at: 0, length: TAIL_CHUNK_BYTES },
      { at: 2 * TAIL_CHUNK_BYTES, length: TAIL_CHUNK_BYTES },
    ]);
    await verifiedAtEnd(partial, tail, blob);
  });

  it('a piece still arriving in its spill holds the bytes in order back at its start, though the hash cursor passed them; complete, it goes as a piece and the bytes after it follow', async () => {
    const { blob, partial, job, tail } = await piecesWriter(3, 'pending');
    const { spill } = memorySpill();
    const watched = job.watchSpill(spill);
    watched.assigned!(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES));
    // The cursor hashed the first chunk, the spill as it arrived, and half the third chunk.
    partial.set({ offset: 2.5 * TAIL_CHUNK_BYTES });
    const first = await tail.next();
    if (!('bytes' in first)) throw new Error('expected bytes first');
    expect({ at: first.at, length: first.bytes.byteLength }).toEqual({ at: 0, length: TAIL_CHUNK_BYTES });
    tail.taken(first.bytes, first.bytes.byteLength);
    // Nothing more while the piece is incomplete (not its bytes, not those after it).
    const waiting = tail.next();
    let early: unknown;
    void waiting.then((m) => (early = m));
    await new Promise((r) => setTimeout(r, TAIL_FLUSH_MS * 3));
    expect(early).toBeUndefined();
    watched.completed!(TAIL_CHUNK_BYTES);
    const piece = await waiting;
    if (!('piece' in piece)) throw new Error(`expected the piece, got ${JSON.stringify(piece)}`);
    expect(piece.piece.start).toBe(TAIL_CHUNK_BYTES);
    expect(
      Buffer.compare(Buffer.from(await piece.piece.blob.arrayBuffer()), Buffer.from(blob.subarray(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES))),
    ).toBe(0);
    tail.pieceDone(piece.piece.id);
    partial.set({ offset: blob.byteLength });
    const after = await bytesToEnd(tail, blob);
    expect(after[0]!.at).toBe(2 * TAIL_CHUNK_BYTES);
    expect(after.reduce((n, c) => n + c.length, 0)).toBe(TAIL_CHUNK_BYTES);
    await verifiedAtEnd(partial, tail, blob);
  });

  it('a piece whose spill cannot be snapshot no longer holds the bytes back: they come in order', async () => {
    const { blob, partial, job, tail } = await piecesWriter(3, 'no snapshot');
    const { spill } = memorySpill();
    const failing = { ...spill, snapshot: async (): Promise<Blob> => Promise.reject(new Error('no file')) };
    const watched = job.watchSpill(failing);
    watched.assigned!(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES));
    partial.set({ offset: blob.byteLength });
    watched.completed!(TAIL_CHUNK_BYTES);
    expect((await bytesToEnd(tail, blob)).map((c) => c.at)).toEqual([0, TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES]);
  });

  it("the blob's last piece does not hold the bytes back: they go as the hash cursor passes them (the file is not left a piece behind its last byte)", async () => {
    const { blob, partial, job, tail } = await piecesWriter(2, 'last piece');
    const { spill } = memorySpill();
    const watched = job.watchSpill(spill);
    watched.assigned!(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES));
    partial.set({ offset: blob.byteLength });
    expect((await bytesToEnd(tail, blob)).map((c) => c.at)).toEqual([0, TAIL_CHUNK_BYTES]);
  });

  it('a writer that did not ask gets no pieces, and the spill is not held back', async () => {
    const blob = pseudoRandomBytes(2 * TAIL_CHUNK_BYTES, 'no pieces');
    const partial = Object.assign(new FakePartial(blob), { size: blob.byteLength });
    const job = new LiveJob();
    const tail = follow(job);
    job.attach(partial);
    const { spill, resets } = memorySpill();
    const watched = job.watchSpill(spill);
    watched.assigned!(TAIL_CHUNK_BYTES, 2 * TAIL_CHUNK_BYTES);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES));
    watched.completed!(TAIL_CHUNK_BYTES);
    await watched.reset!();
    expect(resets()).toBe(1);
    partial.set({ offset: blob.byteLength });
    // Every byte comes before the commit (a spill held back would never come: the test times out);
    // waiting on a clock instead let a loaded machine commit first, and the rest was left to the copy.
    const out: Buffer[] = [];
    for (let got = 0; got < blob.byteLength;) {
      const m = await tail.next();
      if (!('bytes' in m)) throw new Error(`expected bytes, got ${JSON.stringify(m)}`);
      out.push(Buffer.from(m.bytes));
      got += m.bytes.byteLength;
      tail.taken(m.bytes, m.bytes.byteLength);
    }
    await verifiedAtEnd(partial, tail, blob);
    expect(Buffer.compare(Buffer.concat(out), Buffer.from(blob))).toBe(0);
  });

  it('a writer that goes away releases the spills it held', async () => {
    const { blob, job, tail } = await piecesWriter(2, 'gone');
    const { spill } = memorySpill();
    const watched = job.watchSpill(spill);
    await watched.write(blob.subarray(TAIL_CHUNK_BYTES));
    watched.completed!(TAIL_CHUNK_BYTES);
    const m = await tail.next();
    expect('piece' in m).toBe(true);
    tail.close();
    await watched.reset!();
  });
});

describe('layer tail', () => {
  it('sends the hashed bytes in order as the partial grows, then "verified" with the count sent', async () => {
    const blob = pseudoRandomBytes(3 * TAIL_CHUNK_BYTES + 123, 'tail');
    const partial = new FakePartial(blob);
    const job = new LiveJob();
    const tail = follow(job);
    const reading = readAll(tail);
    job.attach(partial);
    for (let at = 0; at < blob.byteLength; at += 700_000) {
      partial.set({ offset: Math.min(blob.byteLength, at + 700_000) });
      await tick();
    }
    partial.set({ phase: 'committing' });
    await tick();
    partial.set({ phase: 'committed' });
    const { bytes, verified } = await reading;
    expect(verified).toBe(bytes.byteLength);
    // Whatever was not sent before the commit is copied from the store by the writer.
    expect(Buffer.compare(bytes, Buffer.from(blob.subarray(0, verified)))).toBe(0);
    // The whole chunks went as they filled; the last 123 bytes were waiting for more (or for the
    // flush delay) when the commit came.
    expect(verified).toBe(3 * TAIL_CHUNK_BYTES);
  });

  it('the end of a blob goes at once: its last part chunk does not wait for the flush delay', async () => {
    const blob = pseudoRandomBytes(TAIL_CHUNK_BYTES + 777, 'end');
    const partial = Object.assign(new FakePartial(blob), { size: blob.byteLength });
    const job = new LiveJob();
    const tail = follow(job);
    const reading = readAll(tail);
    job.attach(partial);
    partial.set({ offset: blob.byteLength });
    // Committed right after its last byte (no time for a flush delay): all of it was sent anyway.
    await tick();
    partial.set({ phase: 'committing' });
    partial.set({ phase: 'committed' });
    const { bytes, verified } = await reading;
    expect(verified).toBe(blob.byteLength);
    expect(Buffer.compare(bytes, Buffer.from(blob))).toBe(0);
  });

  it('a partial growing by small reads goes out in whole chunks, and less than a chunk after the flush delay', async () => {
    const step = 64 * 1024;
    const blob = pseudoRandomBytes(TAIL_CHUNK_BYTES + 5000, 'small reads');
    const partial = new FakePartial(blob);
    const job = new LiveJob();
    const tail = follow(job);
    const reading = readAll(tail);
    job.attach(partial);
    for (let at = step; at <= TAIL_CHUNK_BYTES; at += step) {
      partial.set({ offset: at });
      await tick();
    }
    partial.set({ offset: blob.byteLength });
    // Nothing more comes in: the 5000 bytes go once the flush delay has passed.
    await new Promise((r) => setTimeout(r, TAIL_FLUSH_MS * 3));
    partial.set({ phase: 'committing' });
    partial.set({ phase: 'committed' });
    const { bytes, verified, chunks } = await reading;
    expect(verified).toBe(blob.byteLength);
    expect(Buffer.compare(bytes, Buffer.from(blob))).toBe(0);
    // 65 reads; one message each before (each with a 4 MiB buffer in flight). Now a chunk when it
    // is whole, plus one per flush delay that passed with a part waiting (a few on a slow machine).
    expect(chunks).toBeLessThan(16);
  });

  it('never sends more than the writer granted', async () => {
    const blob = pseudoRandomBytes(TAIL_CREDIT_BYTES + 3 * TAIL_CHUNK_BYTES, 'credit');
    const partial = new FakePartial(blob);
    partial.offset = blob.byteLength;
    const job = new LiveJob();
    job.attach(partial);
    const tail = follow(job);
    // Nothing is taken: only the first grant arrives, then the layer worker waits.
    await tick();
    await tick();
    let received = 0;
    const held: Uint8Array[] = [];
    for (;;) {
      const m = await Promise.race([tail.next(), tick().then(() => undefined)]);
      if (!m || 'verified' in m || 'piece' in m) break;
      received += m.bytes.byteLength;
      held.push(m.bytes);
    }
    expect(received).toBe(TAIL_CREDIT_BYTES);
    // Taking one chunk lets one more come.
    tail.taken(held[0]!, held[0]!.byteLength);
    const more = await tail.next();
    expect('bytes' in more && more.bytes.byteLength).toBe(TAIL_CHUNK_BYTES);
    tail.close();
  });

  it('a blob that starts over after bytes were sent fails the tail', async () => {
    const blob = pseudoRandomBytes(200_000, 'restart');
    const partial = new FakePartial(blob);
    const job = new LiveJob();
    job.attach(partial);
    const tail = follow(job);
    partial.set({ offset: 100_000 });
    const first = await tail.next();
    expect('bytes' in first && first.bytes.byteLength).toBe(100_000);
    partial.set({ offset: 0 });
    const err = LongshoreError.from(await rejection(tail.next()));
    expect(err.message).toMatch(/started over/);
    expect(err.retryable).toBe(true);
  });

  it('a partial given up after bytes were sent fails; one given up before any was sent waits for the job', async () => {
    const blob = pseudoRandomBytes(10_000, 'closed');
    const sentSome = new FakePartial(blob);
    const job = new LiveJob();
    job.attach(sentSome);
    const tail = follow(job);
    sentSome.set({ offset: 5_000 });
    await tail.next();
    sentSome.set({ phase: 'closed' });
    job.end(false, 'DIGEST_MISMATCH');
    expect(LongshoreError.from(await rejection(tail.next())).message).toMatch(/DIGEST_MISMATCH|stopped/);

    // Found stored by another pull: the partial closes at once, the job ends well, nothing was sent.
    const none = new FakePartial(blob);
    const other = new LiveJob();
    other.attach(none);
    const second = follow(other);
    none.set({ phase: 'closed' });
    await tick();
    other.end(true);
    expect(await second.next()).toEqual({ verified: 0 });
  });

  it('a job without a followable partial (cached, decompressed, IndexedDB segments): "verified" at 0 when it ends, "failed" if it fails', async () => {
    const job = new LiveJob();
    job.attach({});
    const tail = follow(job);
    await tick();
    job.end(true);
    expect(await tail.next()).toEqual({ verified: 0 });

    const failing = new LiveJob();
    const other = follow(failing);
    failing.end(false, 'HTTP 404');
    expect(LongshoreError.from(await rejection(other.next())).message).toMatch(/HTTP 404/);
  });
});
