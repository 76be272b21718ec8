// How the fetch engine reads a body (readBody in blob-fetch.ts): into one reused buffer with a BYOB
// reader when the sink copies what it is given (a byte stream, as fetch bodies are), with the
// default reader otherwise, so a sink that keeps chunks never sees its bytes overwritten; read
// failures become retryable NETWORK errors.
import { describe, expect, it } from 'vitest';
import { keptReadBuffers, READ_BUFFER_BYTES, readBody } from '../../src/core/http/blob-fetch.ts';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';
import { pseudoRandomBytes } from '../helpers/fixtures.ts';

const blob = pseudoRandomBytes(3 * 1024 * 1024 + 17, 'read-body');

/** A byte stream serving `blob` in pieces of at most `piece` bytes; counts BYOB and default pulls. */
function byteSource(piece = 100_000, failAt?: number) {
  const seen = { byob: 0, plain: 0 };
  let at = 0;
  const stream = new ReadableStream({
    type: 'bytes',
    pull(controller) {
      if (failAt !== undefined && at >= failAt) return controller.error(new TypeError('socket hang up'));
      if (at >= blob.byteLength) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      const request = controller.byobRequest;
      if (request?.view) {
        seen.byob++;
        const view = new Uint8Array(request.view.buffer, request.view.byteOffset, request.view.byteLength);
        const n = Math.min(piece, view.byteLength, blob.byteLength - at);
        view.set(blob.subarray(at, at + n));
        at += n;
        request.respond(n);
      } else {
        seen.plain++;
        const n = Math.min(piece, blob.byteLength - at);
        controller.enqueue(blob.slice(at, at + n));
        at += n;
      }
    },
  });
  return { stream: stream as ReadableStream<Uint8Array>, seen };
}

describe('readBody', () => {
  it('the read buffer of a finished body serves the next body (a request per piece allocates nothing); one a failed read kept is not', async () => {
    const before = keptReadBuffers();
    await readBody(byteSource().stream, 'layer 1/1', undefined, true, async () => undefined);
    const afterOne = keptReadBuffers();
    expect(afterOne).toBe(Math.min(before + 1, 8));
    let during = -1;
    await readBody(byteSource().stream, 'layer 1/1', undefined, true, async () => {
      during = keptReadBuffers();
    });
    // Taken from the kept ones while the body is read, given back after.
    expect(during).toBe(afterOne - 1);
    expect(keptReadBuffers()).toBe(afterOne);
    await expect(readBody(byteSource(100_000, 500_000).stream, 'layer 1/1', undefined, true, async () => undefined)).rejects.toThrow();
    expect(keptReadBuffers()).toBe(afterOne - 1);
  });

  it('a sink that copies: every read goes into the one reused buffer (BYOB), and the bytes arrive in order', async () => {
    const { stream, seen } = byteSource();
    const out = new Uint8Array(blob.byteLength);
    let at = 0;
    const backing = new Set<number>();
    await readBody(stream, 'layer 1/1', undefined, true, async (chunk) => {
      backing.add(chunk.buffer.byteLength);
      out.set(chunk, at);
      at += chunk.byteLength;
    });
    expect(at).toBe(blob.byteLength);
    expect(Buffer.from(out).equals(Buffer.from(blob))).toBe(true);
    expect(seen.plain).toBe(0);
    expect(seen.byob).toBeGreaterThan(30);
    // Views into the read buffer, never a chunk-sized allocation.
    expect([...backing]).toEqual([READ_BUFFER_BYTES]);
  });

  it('a sink that keeps chunks: the default reader, so what it kept is never overwritten', async () => {
    const { stream, seen } = byteSource();
    const kept: Uint8Array[] = [];
    await readBody(stream, 'layer 1/1', undefined, false, async (chunk) => void kept.push(chunk));
    expect(seen.byob).toBe(0);
    expect(Buffer.concat(kept).equals(Buffer.from(blob))).toBe(true);
  });

  it('a stream that is not a byte stream is read with the default reader even when reuse is allowed', async () => {
    const pieces = [blob.slice(0, 1000), blob.slice(1000)];
    const stream = new ReadableStream<Uint8Array>({ pull: (c) => (pieces.length ? c.enqueue(pieces.shift()!) : c.close()) });
    const kept: Uint8Array[] = [];
    await readBody(stream, 'layer 1/1', undefined, true, async (chunk) => void kept.push(chunk.slice()));
    expect(Buffer.concat(kept).equals(Buffer.from(blob))).toBe(true);
  });

  it('a broken read is a retryable NETWORK error naming what was downloading', async () => {
    const { stream } = byteSource(100_000, 250_000);
    let got = 0;
    const err = await readBody(stream, 'layer 2/3', undefined, true, async (chunk) => void (got += chunk.byteLength)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LongshoreError);
    expect(err).toMatchObject({ code: ErrorCode.Network, retryable: true });
    expect((err as Error).message).toContain('layer 2/3');
    expect(got).toBeGreaterThanOrEqual(250_000);
  });
});
