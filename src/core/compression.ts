// Layer compression: sniffed from magic bytes (a media type can lie), decompressed as a stream.
// gzip uses the platform's DecompressionStream (native, ~3x fflate's JS inflate in Chromium), one
// decoder per member (gzip-members.ts); fflate's streaming Gunzip takes over where the platform has none.
import { Gunzip } from 'fflate';
import { ErrorCode, LongshoreError, TRUNCATED } from './errors.ts';
import { nativeGunzipMembers } from './gzip-members.ts';
import { pushDecoderStream } from './push-decoder.ts';

export type Compression = 'gzip' | 'zstd' | 'none';

export function sniffCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** Peek at the first bytes of a stream without consuming them. */
export async function peek(
  stream: ReadableStream<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const buffered: Uint8Array[] = [];
  let have = 0;
  let done = false;
  while (have < n) {
    const r = await reader.read();
    if (r.done) {
      done = true;
      break;
    }
    buffered.push(r.value);
    have += r.value.byteLength;
  }
  const head = new Uint8Array(Math.min(n, have));
  let off = 0;
  for (const c of buffered) {
    if (off >= head.length) break;
    const take = Math.min(c.byteLength, head.length - off);
    head.set(c.subarray(0, take), off);
    off += take;
  }
  const replay = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = buffered.shift();
      if (next) return controller.enqueue(next);
      if (done) return controller.close();
      const r = await reader.read();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return { head, stream: replay };
}

export interface DecompressOptions {
  /** zstd needs a decoder the platform lacks; the caller supplies one when it has it. */
  zstd?: () => TransformStream<Uint8Array, Uint8Array>;
  /** Use fflate even where DecompressionStream exists (tests, benchmarks). */
  forceFflate?: boolean;
}

/** gzip inflate in JS (fflate), as a stream; handles concatenated gzip members. */
export function fflateGunzipStream(): TransformStream<Uint8Array, Uint8Array> {
  return pushDecoderStream(
    (ondata) => new Gunzip(ondata),
    (err, atEnd) =>
      new LongshoreError(
        ErrorCode.Format,
        `${atEnd ? 'Truncated or invalid' : 'Invalid'} gzip data: ${(err as Error)?.message ?? String(err)}`,
        { cause: err, data: atEnd ? { ...TRUNCATED } : {} },
      ),
  );
}

export function gunzipStream(options: DecompressOptions = {}): TransformStream<Uint8Array, Uint8Array> {
  if (!options.forceFflate && typeof DecompressionStream === 'function') {
    return nativeGunzipMembers(() => new DecompressionStream('gzip') as unknown as TransformStream<Uint8Array, Uint8Array>);
  }
  return fflateGunzipStream();
}

/**
 * Input handed to a decoder in one write. A decoder inflates a whole write before it looks at
 * backpressure (Compression Streams: "decompress and enqueue a chunk"; fflate and fzstd call back
 * for every block of a push), and deflate expands up to 1032:1 (RFC 1951, a 258-byte match per
 * 2 bits): one 1 MiB read of a zero-filled layer would become 1 GiB held at once.
 */
export const DECODE_PIECE_BYTES = 64 * 1024;

/**
 * `decoder` written at most `pieceBytes` at a time, each write waiting for the decoder's readable
 * side to be drained (TransformStream backpressure): what is held between the decoder and its
 * reader is one piece's output, whatever the size of the chunks coming in.
 */
export function piecewise(
  decoder: TransformStream<Uint8Array, Uint8Array>,
  pieceBytes = DECODE_PIECE_BYTES,
): ReadableWritablePair<Uint8Array, Uint8Array> {
  const writer = decoder.writable.getWriter();
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      for (let at = 0; at < chunk.byteLength; at += pieceBytes) await writer.write(chunk.subarray(at, at + pieceBytes));
    },
    close: () => writer.close(),
    abort: (reason) => writer.abort(reason),
  });
  return { writable, readable: decoder.readable };
}

/** Decompress whatever the stream holds (gzip, zstd or plain tar), detected by magic bytes. */
export async function decompress(
  stream: ReadableStream<Uint8Array>,
  options: DecompressOptions = {},
): Promise<{ compression: Compression; stream: ReadableStream<Uint8Array> }> {
  const peeked = await peek(stream, 4);
  const compression = sniffCompression(peeked.head);
  switch (compression) {
    case 'gzip':
      return { compression, stream: peeked.stream.pipeThrough(piecewise(gunzipStream(options))) };
    case 'zstd':
      if (!options.zstd) {
        await peeked.stream.cancel().catch(() => undefined);
        throw new LongshoreError(ErrorCode.Format, 'This layer is zstd-compressed and no zstd decoder is available here.', {
          hint: 'Choose an output format that keeps layers compressed as they are (docker, oci, tarball).',
        });
      }
      return { compression, stream: peeked.stream.pipeThrough(piecewise(options.zstd())) };
    default:
      return { compression, stream: peeked.stream };
  }
}
