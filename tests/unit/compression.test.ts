import { describe, expect, it } from 'vitest';
import { gzipSync, constants } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { Gunzip } from 'fflate';
import { DECODE_PIECE_BYTES, decompress, piecewise, sniffCompression, peek } from '../../src/core/compression.ts';
import { pushDecoderStream } from '../../src/core/push-decoder.ts';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';

const text = new TextEncoder().encode('layer data '.repeat(50_000));

function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream({
    pull(c) {
      if (o >= bytes.length) return c.close();
      c.enqueue(bytes.slice(o, o + size));
      o += size;
    },
  });
}

async function all(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

describe('compression', () => {
  it('sniffs magic bytes, not media types', () => {
    expect(sniffCompression(new Uint8Array([0x1f, 0x8b, 8, 0]))).toBe('gzip');
    expect(sniffCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(sniffCompression(new TextEncoder().encode('etc/'))).toBe('none');
    expect(sniffCompression(new Uint8Array([0x1f]))).toBe('none');
  });

  it('peek does not consume', async () => {
    const { head, stream } = await peek(chunked(text.slice(0, 5000), 3), 4);
    expect([...head]).toEqual([...text.slice(0, 4)]);
    expect(await all(stream)).toEqual(text.slice(0, 5000));
  });

  it.each([
    ['native DecompressionStream', false],
    ['fflate', true],
  ])('gunzips with %s, across odd chunk sizes', async (_name, forceFflate) => {
    const gz = gzipSync(text, { level: constants.Z_BEST_SPEED });
    const { compression, stream } = await decompress(chunked(gz, 777), { forceFflate });
    expect(compression).toBe('gzip');
    expect(await all(stream)).toEqual(text);
  });

  it('fflate handles concatenated gzip members', async () => {
    const gz = Buffer.concat([gzipSync(text.slice(0, 1000)), gzipSync(text.slice(1000))]);
    const { stream } = await decompress(chunked(gz, 4096), { forceFflate: true });
    expect(await all(stream)).toEqual(text);
  });

  it('fails on truncated gzip instead of ending short', async () => {
    const gz = gzipSync(text);
    const { stream } = await decompress(chunked(gz.subarray(0, gz.length - 100), 1000), { forceFflate: true });
    await expect(all(stream)).rejects.toThrow();
    const native = await decompress(chunked(gz.subarray(0, gz.length - 100), 1000));
    await expect(all(native.stream)).rejects.toThrow();
  });

  it('passes plain tar through and refuses zstd without a decoder', async () => {
    expect(await all((await decompress(chunked(text, 100))).stream)).toEqual(text);
    await expect(decompress(chunked(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0]), 10))).rejects.toMatchObject({ code: 'FORMAT' });
  });

  describe('a chunk that inflates a thousandfold', () => {
    // 64 MiB of zeros gzip to ~64 KB: one read of the layer, inflated in one go, would be held whole.
    const zeros = new Uint8Array(64 * 1024 * 1024);
    const gz = gzipSync(zeros, { level: constants.Z_BEST_COMPRESSION });

    /** fflate's Gunzip (what decoders do: inflate a whole write, then hand it on), counting what it produced. */
    function countingGunzip(): { decoder: TransformStream<Uint8Array, Uint8Array>; produced: () => number } {
      let produced = 0;
      const decoder = pushDecoderStream(
        (ondata) =>
          new Gunzip((data) => {
            produced += data.byteLength;
            ondata(data);
          }),
        (err) => new LongshoreError(ErrorCode.Format, String(err)),
      );
      return { decoder, produced: () => produced };
    }

    it('is fed to the decoder piece by piece: what waits for the reader stays one piece of output', async () => {
      const piece = 4096;
      const { decoder, produced } = countingGunzip();
      const reader = chunked(gz, gz.byteLength).pipeThrough(piecewise(decoder, piece)).getReader();
      let consumed = 0;
      let mostHeld = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        // Held: produced and not yet taken by the reader, the chunk in hand included.
        mostHeld = Math.max(mostHeld, produced() - consumed);
        consumed += value.byteLength;
      }
      expect(consumed).toBe(zeros.byteLength);
      // Deflate's ceiling is 1032:1 per piece; the whole image inflated at once would be 64 MiB.
      expect(mostHeld).toBeLessThanOrEqual(2 * piece * 1032);
    });

    it('decompress() hands its decoder pieces: one read of 192 MiB of zeros comes out a piece at a time', async () => {
      const big = gzipSync(new Uint8Array(192 * 1024 * 1024), { level: constants.Z_BEST_COMPRESSION });
      expect(big.byteLength).toBeGreaterThan(2 * DECODE_PIECE_BYTES);
      const reader = (await decompress(chunked(big, big.byteLength), { forceFflate: true })).stream.getReader();
      let total = 0;
      let largest = 0;
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        total += r.value.byteLength;
        largest = Math.max(largest, r.value.byteLength);
      }
      expect(total).toBe(192 * 1024 * 1024);
      expect(largest).toBeLessThanOrEqual(DECODE_PIECE_BYTES * 1032);
    });

    it.each([
      ['native DecompressionStream', false],
      ['fflate', true],
    ])('decompress() takes a read of many pieces whole, with %s', async (_name, forceFflate) => {
      // Incompressible bytes around the zeros, so the one read spans several pieces.
      const noise = randomBytes(3 * DECODE_PIECE_BYTES);
      const plain = Buffer.concat([noise, zeros.subarray(0, 16 * 1024 * 1024), noise]);
      const one = gzipSync(plain);
      expect(one.byteLength).toBeGreaterThan(4 * DECODE_PIECE_BYTES);
      const { stream } = await decompress(chunked(one, one.byteLength), { forceFflate });
      expect(Buffer.from(await all(stream)).equals(plain)).toBe(true);
    });
  });
});
