// The streaming zstd decoder (fzstd) the legacy format needs, judged against the zstd CLI: what
// `zstd` compresses (levels, checksums, several frames, skippable frames), fed in ragged chunks,
// comes back byte-exact; broken input fails with a FORMAT error instead of ending short.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';
import { decompress } from '../../src/core/compression.ts';
import { zstdDecompressStream } from '../../src/core/zstd.ts';

const zstd = (input: Uint8Array, ...args: string[]): Uint8Array =>
  new Uint8Array(execFileSync('zstd', ['-q', '-c', ...args], { input, maxBuffer: 1 << 30 }));

/** Half text (compresses well, long matches), half SHA-256 counter bytes (does not). */
function sample(size: number, seed: string): Uint8Array {
  const out = new Uint8Array(size);
  const text = new TextEncoder().encode(`${seed}: the quick brown fox jumps over the lazy dog\n`.repeat(64));
  for (let offset = 0, counter = 0; offset < size; counter++) {
    const block = counter % 2 === 0 ? text : createHash('sha256').update(`${seed}:${counter}`).digest();
    const n = Math.min(block.length, size - offset);
    out.set(block.subarray(0, n), offset);
    offset += n;
  }
  return out;
}

/** `bytes` as a stream of chunks of 1 to `max` bytes (seeded sizes), as a network delivers them. */
function ragged(bytes: Uint8Array, max: number, seed = 1): ReadableStream<Uint8Array> {
  let offset = 0;
  let x = seed;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      x = (x * 1103515245 + 12345) >>> 0;
      const n = 1 + (x % max);
      controller.enqueue(bytes.slice(offset, offset + n));
      offset += n;
    },
  });
}

async function decode(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream.pipeThrough(zstdDecompressStream())).arrayBuffer());
}

describe('zstdDecompressStream (fzstd) against the zstd CLI', () => {
  const data = sample(3 * 1024 * 1024 + 77, 'layer');

  it.each([
    ['default level', []],
    ['level 19 with a content checksum', ['-19', '--check']],
    ['no checksum', ['--no-check']],
    ['long window (--long=24)', ['--long=24']],
  ] as const)('%s, in ragged chunks', async (_, args) => {
    const compressed = zstd(data, ...args);
    expect(Buffer.from(await decode(ragged(compressed, 9000))).equals(Buffer.from(data))).toBe(true);
  });

  it('tiny chunks (1–7 bytes) across frame headers and block boundaries', async () => {
    const small = sample(200_000, 'tiny');
    expect(Buffer.from(await decode(ragged(zstd(small), 7))).equals(Buffer.from(small))).toBe(true);
  });

  it('several frames back to back, and a skippable frame between them', async () => {
    const a = sample(100_000, 'a');
    const b = sample(150_000, 'b');
    const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
    const joined = Buffer.concat([zstd(a), skippable, zstd(b, '-5')]);
    const out = await decode(ragged(new Uint8Array(joined), 5000));
    expect(Buffer.from(out).equals(Buffer.concat([a, b]))).toBe(true);
  });

  it('an empty input frame decodes to nothing', async () => {
    expect((await decode(ragged(zstd(new Uint8Array(0)), 100))).byteLength).toBe(0);
  });

  it('truncated data fails with FORMAT, never a short success', async () => {
    const compressed = zstd(data);
    const err = await decode(ragged(compressed.subarray(0, compressed.length - 100), 4096)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LongshoreError);
    expect((err as LongshoreError).code).toBe(ErrorCode.Format);
    expect((err as LongshoreError).message).toMatch(/^Truncated or invalid zstd data/);
  });

  it('corrupt data fails with FORMAT', async () => {
    const compressed = zstd(sample(10_000, 'c'));
    const bad = compressed.slice();
    bad[4] = 0xff; // frame header descriptor with the reserved bit set
    const err = await decode(ragged(bad, 4096)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.Format });
  });

  it('decompress() uses it when given, sniffing the zstd magic', async () => {
    const small = sample(50_000, 'sniff');
    const { compression, stream } = await decompress(ragged(zstd(small), 1000), { zstd: zstdDecompressStream });
    expect(compression).toBe('zstd');
    expect(Buffer.from(await new Response(stream).arrayBuffer()).equals(Buffer.from(small))).toBe(true);
  });
});
