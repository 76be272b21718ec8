// The blob fetch engine against a small in-process server: resume with Range, what a 200 or a wrong
// Content-Range does, the retry budget and its jittered waits. The real registry paths are in
// tests/integration/resume.test.ts; these are the answers a healthy registry never gives.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { fetchBlob, PROGRESS_CREDIT_BYTES, type BlobSender, type ByteRange } from '../../src/core/http/blob-fetch.ts';
import { backoffMs, defaultRetryPolicy, type RetryPolicy } from '../../src/core/http/retry.ts';
import { MemoryBlobStore, type Spill } from '../../src/core/store/blob-store.ts';
import { LongshoreError } from '../../src/core/errors.ts';
import { pseudoRandomBytes } from '../helpers/fixtures.ts';
import { rejection } from '../helpers/assert.ts';

const blob = pseudoRandomBytes(300_000, 'blob-fetch');
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
const expected = { digest, size: blob.byteLength, label: 'layer 1/1' };

interface Answer {
  /** Cut the body after this many bytes (a dropped connection). */
  cutAfter?: number;
  /** Ignore Range and send 200 with everything. */
  ignoreRange?: boolean;
  /** Answer a Range request with this Content-Range start instead of the one asked for. */
  wrongStart?: number;
  status?: number;
  retryAfter?: string;
  /** Flip a byte of the body. */
  corrupt?: boolean;
}

/** Serves `blob`; answer i of `answers` shapes request i (later requests are healthy). */
function server(answers: Answer[] = [], policy: Partial<RetryPolicy> = {}) {
  const requests: (ByteRange | undefined)[] = [];
  const sleeps: number[] = [];
  const sender: BlobSender = {
    retry: { ...defaultRetryPolicy, random: () => 0.5, sleep: async (ms) => void sleeps.push(ms), ...policy },
    async send(range) {
      const a = answers[requests.length] ?? {};
      requests.push(range);
      if (a.status) return new Response('busy', { status: a.status, headers: a.retryAfter ? { 'retry-after': a.retryAfter } : {} });
      const start = range && !a.ignoreRange ? (a.wrongStart ?? range.start) : 0;
      const end = range && !a.ignoreRange ? (range.end ?? blob.byteLength - 1) : blob.byteLength - 1;
      const body = blob.slice(start, end + 1);
      if (a.corrupt) body[body.length >> 1] = body[body.length >> 1]! ^ 0xff;
      const headers: Record<string, string> = { 'content-length': String(body.byteLength) };
      if (range && !a.ignoreRange) headers['content-range'] = `bytes ${start}-${end}/${blob.byteLength}`;
      const cut = a.cutAfter;
      const sent = cut === undefined ? body : body.slice(0, cut);
      let at = 0;
      const stream = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (at < sent.byteLength) {
              controller.enqueue(sent.slice(at, at + 16_384));
              at += 16_384;
            } else if (cut === undefined) controller.close();
            else controller.error(new TypeError('network error'));
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(stream, { status: range && !a.ignoreRange ? 206 : 200, headers });
    },
    fail: async (response) =>
      new LongshoreError(response.status === 429 ? 'TOOMANYREQUESTS' : 'HTTP', `status ${response.status}`, {
        retryable: response.status === 429 || response.status >= 500,
      }),
  };
  return { sender, requests, sleeps };
}

async function stored(store: MemoryBlobStore): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of (await store.open(digest))! as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('fetchBlob', () => {
  it('a break continues with Range from the last byte, and only the missing bytes are fetched', async () => {
    const { sender, requests } = server([{ cutAfter: 100_000 }, { cutAfter: 50_000 }]);
    const store = new MemoryBlobStore();
    let done = 0;
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, { onBytes: (n) => (done += n) });
    expect(requests).toEqual([undefined, { start: 100_000 }, { start: 150_000 }]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
    expect(done).toBe(blob.byteLength);
    expect(store.listPartials()).toEqual([]);
  });

  it('a later pull resumes a kept partial from its saved hasher state: one Range request for the rest', async () => {
    const store = new MemoryBlobStore({ checkpointBytes: 64 * 1024 });
    const first = server([{ cutAfter: 200_000 }], { retries: 0 });
    const error = await rejection(fetchBlob(first.sender, await store.openPartial(digest, blob.byteLength), expected));
    expect(error.code).toBe('NETWORK');
    expect(await store.has(digest)).toBe(false);
    const [partial] = store.listPartials();
    expect(partial).toMatchObject({ key: digest, done: 200_000, total: blob.byteLength });

    const second = server();
    await fetchBlob(second.sender, await store.openPartial(digest, blob.byteLength), expected);
    expect(second.requests).toEqual([{ start: 200_000 }]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a 200 to a Range request restarts the blob from byte 0, dropping what was held', async () => {
    const { sender, requests } = server([{ cutAfter: 100_000 }, { ignoreRange: true }]);
    const store = new MemoryBlobStore();
    let done = 0;
    const seen: number[] = [];
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, { onBytes: (n) => seen.push((done += n)) });
    expect(requests).toEqual([undefined, { start: 100_000 }]);
    expect(Math.min(...seen.slice(seen.indexOf(100_000) + 1))).toBeLessThan(100_000);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a 416 to a Range request starts the blob over without Range', async () => {
    const { sender, requests } = server([{ cutAfter: 100_000 }, { status: 416 }]);
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected);
    expect(requests).toEqual([undefined, { start: 100_000 }, undefined]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('two pulls of one blob at once (a layer listed twice): the second waits for the first and finds it stored', async () => {
    const store = new MemoryBlobStore();
    const first = await store.openPartial(digest, blob.byteLength);
    let second: Awaited<ReturnType<MemoryBlobStore['openPartial']>> | undefined;
    const waiting = store.openPartial(digest, blob.byteLength).then((p) => (second = p));
    await new Promise((r) => setTimeout(r, 10));
    expect(second).toBeUndefined();
    await fetchBlob(server().sender, first, expected);
    await waiting;
    expect(await store.has(digest)).toBe(true);
    await second!.close(true);
  });

  it('a 206 with another range than asked is not spliced on: the blob is asked again without Range', async () => {
    const { sender, requests } = server([{ cutAfter: 100_000 }, { wrongStart: 99_000 }]);
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected);
    expect(requests).toEqual([undefined, { start: 100_000 }, undefined]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a digest mismatch discards everything; every attempt bad → DIGEST_MISMATCH, nothing kept, no partial', async () => {
    const { sender, requests } = server(
      Array.from({ length: 10 }, () => ({ corrupt: true })),
      { retries: 2 },
    );
    const store = new MemoryBlobStore();
    const error = await rejection(fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected));
    expect(error.code).toBe('DIGEST_MISMATCH');
    expect(requests).toHaveLength(3);
    expect(await store.has(digest)).toBe(false);
    expect(store.listPartials()).toEqual([]);
  });

  it('requests per blob: 1 + retries for failures without progress, with jittered exponential waits', async () => {
    const { sender, requests, sleeps } = server(
      Array.from({ length: 10 }, () => ({ status: 503 })),
      { retries: 3 },
    );
    const error = await rejection(fetchBlob(sender, await new MemoryBlobStore().openPartial(digest, blob.byteLength), expected));
    expect(error.retryable).toBe(true);
    expect(requests).toHaveLength(4);
    expect(sleeps).toEqual([0, 1, 2].map((i) => backoffMs(i, { ...defaultRetryPolicy, random: () => 0.5 })));
    expect(sleeps).toEqual([375, 750, 1500]);
  });

  it('waits what Retry-After asks', async () => {
    const { sender, sleeps } = server([{ status: 429, retryAfter: '3' }]);
    await fetchBlob(sender, await new MemoryBlobStore().openPartial(digest, blob.byteLength), expected);
    expect(sleeps).toEqual([3000]);
  });

  it('a break after PROGRESS_CREDIT_BYTES costs no retry, so a link that keeps progressing finishes', async () => {
    expect(PROGRESS_CREDIT_BYTES).toBe(16 * 1024 * 1024);
    const cuts = [{ cutAfter: 60_000 }, { cutAfter: 60_000 }, { cutAfter: 60_000 }, { cutAfter: 60_000 }];
    const progressing = server(cuts, { retries: 0 });
    await fetchBlob(progressing.sender, await new MemoryBlobStore().openPartial(digest, blob.byteLength), expected, {
      progressCreditBytes: 50_000,
    });
    expect(progressing.requests).toHaveLength(5);
    // The same cuts under a credit they never reach: the first one ends it.
    const stalled = server(cuts, { retries: 0 });
    const error = await rejection(
      fetchBlob(stalled.sender, await new MemoryBlobStore().openPartial(digest, blob.byteLength), expected, {
        progressCreditBytes: 70_000,
      }),
    );
    expect(error.code).toBe('NETWORK');
    expect(stalled.requests).toHaveLength(1);
  });
});

describe('fetchBlob with parallel ranges', () => {
  const parallel = { connections: 4, threshold: 100_000 };

  it('a big blob is fetched as N contiguous ranges, stored ahead of the hash cursor, and verified in order', async () => {
    const { sender, requests } = server();
    const store = new MemoryBlobStore();
    const spills: number[] = [];
    const spill = async (id: string) => {
      const s = await store.createSpill();
      spills.push(Number(id.split(':').at(-1)));
      return s;
    };
    let done = 0;
    let peak = 0;
    let beatsAfterAll = 0;
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...parallel, spill },
      onBytes: (n) => {
        peak = Math.max(peak, (done += n));
        if (n === 0 && done === blob.byteLength) beatsAfterAll++;
      },
    });
    // Progress counts bytes as they arrive (spilled ones too), each once.
    expect(done).toBe(blob.byteLength);
    expect(peak).toBe(blob.byteLength);
    // Reading the spilled ranges back after the last byte arrived still reports movement (onBytes(0)
    // per chunk), so a watchdog does not take a long read-back for a stall.
    expect(beatsAfterAll).toBeGreaterThan(0);
    expect(requests).toEqual([
      { start: 0, end: 74_999 },
      { start: 75_000, end: 149_999 },
      { start: 150_000, end: 224_999 },
      { start: 225_000, end: 299_999 },
    ]);
    expect(spills).toEqual([75_000, 150_000, 225_000]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('below the threshold, one stream', async () => {
    const { sender, requests } = server();
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { connections: 4, threshold: 400_000, spill: () => store.createSpill() },
    });
    expect(requests).toEqual([undefined]);
  });

  it('a range cut short resumes on its own, narrower', async () => {
    const { sender, requests } = server([{}, { cutAfter: 30_000 }]);
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...parallel, spill: () => store.createSpill() },
    });
    expect(requests.slice(4)).toEqual([{ start: 105_000, end: 149_999 }]);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a server that ignores Range (200) makes the blob fall back to one stream', async () => {
    const { sender, requests } = server(Array.from({ length: 4 }, () => ({ ignoreRange: true })));
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...parallel, spill: () => store.createSpill() },
    });
    expect(requests.at(-1)).toBeUndefined();
    expect(requests.length).toBeLessThanOrEqual(5);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });
});

describe('fetchBlob with parallel ranges: a sliding window of pieces', () => {
  // 300,000 bytes in pieces of 40,000 over 2 connections, at most 3 pieces past the cursor's.
  const windowed = { connections: 2, threshold: 100_000, pieceBytes: 40_000, aheadPieces: 3 };

  /** Spills that count how many hold bytes at once, and the most unhashed bytes they held. */
  function countingSpills(store: MemoryBlobStore) {
    let live = 0;
    const seen = { peakLive: 0, peakBytes: 0, created: [] as number[], live: () => live };
    const spills = new Set<Spill>();
    const spill = async (id: string): Promise<Spill> => {
      const s = await store.createSpill();
      seen.created.push(Number(id.split(':').at(-1)));
      live++;
      seen.peakLive = Math.max(seen.peakLive, live);
      spills.add(s);
      let gone = false;
      return {
        get size() {
          return s.size;
        },
        write: async (chunk) => {
          await s.write(chunk);
          seen.peakBytes = Math.max(
            seen.peakBytes,
            [...spills].reduce((n, x) => n + x.size, 0),
          );
        },
        read: () => s.read(),
        discard: async () => {
          if (!gone) live--;
          gone = true;
          spills.delete(s);
          await s.discard();
        },
      };
    };
    return { spill, seen };
  }

  it('a blob over N pieces is fetched piece by piece in order, never more than aheadPieces past the cursor', async () => {
    const { sender, requests } = server();
    const store = new MemoryBlobStore();
    const { spill, seen } = countingSpills(store);
    let done = 0;
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...windowed, spill },
      onBytes: (n) => (done += n),
    });
    expect(done).toBe(blob.byteLength);
    const starts = Array.from({ length: 8 }, (_, i) => i * 40_000);
    expect(requests).toEqual(starts.map((start) => ({ start, end: Math.min(blob.byteLength, start + 40_000) - 1 })));
    // Every piece but the first (which streams through the cursor) waited in a spill, asked in order.
    expect(seen.created).toEqual(starts.slice(1));
    // The window: the piece being read back at the cursor, and at most 3 past it.
    expect(seen.peakLive).toBeLessThanOrEqual(4);
    expect(seen.peakBytes).toBeLessThanOrEqual(4 * 40_000);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('spills that can be reset are reused: a few for all the pieces, every one discarded at the end', async () => {
    const { sender } = server();
    const store = new MemoryBlobStore();
    let made = 0;
    let discarded = 0;
    const spill = async (): Promise<Spill> => {
      const s = await store.createSpill();
      made++;
      return {
        ...s,
        get size() {
          return s.size;
        },
        discard: async () => void (discarded++, await s.discard()),
      };
    };
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...windowed, pieceBytes: 20_000, spill },
    });
    // 15 pieces, 14 of them spilled, through at most the window's spills.
    expect(made).toBeLessThanOrEqual(4);
    expect(discarded).toBe(made);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a blob under N pieces keeps N equal ranges', async () => {
    const { sender, requests } = server();
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...windowed, pieceBytes: 200_000, spill: () => store.createSpill() },
    });
    expect(requests).toEqual([
      { start: 0, end: 149_999 },
      { start: 150_000, end: 299_999 },
    ]);
  });

  it('a piece cut short resumes on its own, from its last byte', async () => {
    // Request 2 is the third piece (80,000–119,999): cut after 10,000 bytes.
    const { sender, requests } = server([{}, {}, { cutAfter: 10_000 }]);
    const store = new MemoryBlobStore();
    await fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...windowed, spill: () => store.createSpill() },
    });
    expect(requests.filter((r) => r!.end === 119_999)).toEqual([
      { start: 80_000, end: 119_999 },
      { start: 90_000, end: 119_999 },
    ]);
    expect(requests).toHaveLength(9);
    expect(Buffer.compare(await stored(store), Buffer.from(blob))).toBe(0);
  });

  it('a piece that fails for good stops the others; nothing is kept ahead of the cursor', async () => {
    const { sender } = server([{}, {}, { status: 404 }]);
    const store = new MemoryBlobStore();
    const { spill, seen } = countingSpills(store);
    const err = await rejection(
      fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, { parallel: { ...windowed, spill } }),
    );
    expect(LongshoreError.from(err).message).toContain('404');
    expect(seen.created.length).toBeGreaterThan(0);
    expect(seen.peakLive).toBeLessThanOrEqual(4);
    expect(seen.live()).toBe(0);
    expect(await store.has(digest)).toBe(false);
  });

  it('a cancel while connections wait for the window ends the fetch (no connection left waiting)', async () => {
    const { sender: healthy } = server();
    const ac = new AbortController();
    let hold!: () => void;
    const held = new Promise<void>((resolve) => (hold = resolve));
    // The first piece never ends until the cancel: the cursor stays, the window fills up.
    const sender: BlobSender = {
      ...healthy,
      async send(range, signal) {
        if (range?.start !== 0) return healthy.send(range, signal);
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(blob.slice(0, 1000));
            signal?.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')));
            hold();
          },
        });
        return new Response(body, { status: 206, headers: { 'content-range': `bytes 0-${range.end}/${blob.byteLength}` } });
      },
    };
    const store = new MemoryBlobStore();
    const { spill, seen } = countingSpills(store);
    const fetching = fetchBlob(sender, await store.openPartial(digest, blob.byteLength), expected, {
      parallel: { ...windowed, spill },
      signal: ac.signal,
    });
    await held;
    while (seen.created.length < 3) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    expect(LongshoreError.from(await rejection(fetching)).code).toBe('ABORTED');
    // Pieces 1–3 were fetched ahead (the window), none beyond.
    expect(seen.created).toEqual([40_000, 80_000, 120_000]);
  });
});

describe('backoff', () => {
  it('is exponential, capped, and spread by jitter between half and all of the step', () => {
    const policy = { ...defaultRetryPolicy, baseDelayMs: 100, maxDelayMs: 1000 };
    expect([0, 1, 2, 3, 4].map((i) => backoffMs(i, { ...policy, random: () => 0 }))).toEqual([50, 100, 200, 400, 500]);
    expect([0, 1, 2, 3, 4].map((i) => backoffMs(i, { ...policy, random: () => 0.999999 }))).toEqual([100, 200, 400, 800, 1000]);
  });
});
