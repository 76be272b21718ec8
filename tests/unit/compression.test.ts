import { describe, expect, it } from 'vitest';
import { gzipSync, constants } from 'node:zlib';
import { decompress, sniffCompression, peek } from '../../src/core/compression.ts';

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
});
