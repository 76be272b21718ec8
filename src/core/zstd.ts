// zstd decompression (RFC 8878) as a stream, for zstd layers that must be stored uncompressed
// (the legacy docker-save format). Browsers have no native zstd DecompressionStream, so this uses
// fzstd: pure JavaScript (no WASM, no native module), streaming, so the same code runs in a Worker
// and in Node. Limits (fzstd's): the optional frame content checksum is not checked (the layer's
// diff_id is verified after decompression instead, see pull.ts); windows over 2 GiB are refused;
// dictionaries are not supported (OCI layers never use them). Memory is one frame window (8 MiB at
// the default level) plus the block being decoded.
import { Decompress } from 'fzstd';
import { ErrorCode, LongshoreError, TRUNCATED } from './errors.ts';
import { pushDecoderStream } from './push-decoder.ts';

function zstdError(err: unknown, truncated: boolean): LongshoreError {
  const message = err instanceof Error ? err.message : String(err);
  return new LongshoreError(ErrorCode.Format, `${truncated ? 'Truncated or invalid' : 'Invalid'} zstd data: ${message}`, {
    hint: 'The layer is not valid zstd. Choose a format that keeps layers compressed as they are (docker, oci, tarball).',
    cause: err,
    data: truncated ? { ...TRUNCATED } : {},
  });
}

/** A TransformStream that turns zstd frames (concatenated frames and skippable frames allowed) into their content. */
export function zstdDecompressStream(): TransformStream<Uint8Array, Uint8Array> {
  return pushDecoderStream((ondata) => new Decompress(ondata), zstdError);
}
