// A push-style decoder (fflate's Gunzip, fzstd's Decompress: `push(chunk, final)` with an output
// callback) as a TransformStream, with its failures turned into typed errors.
import type { LongshoreError } from './errors.ts';

export interface PushDecoder {
  push(chunk: Uint8Array, final: boolean): void;
}

export function pushDecoderStream(
  create: (ondata: (data: Uint8Array) => void) => PushDecoder,
  failure: (err: unknown, atEnd: boolean) => LongshoreError,
): TransformStream<Uint8Array, Uint8Array> {
  let decoder: PushDecoder;
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      decoder = create((data) => {
        if (data.byteLength) controller.enqueue(data);
      });
    },
    transform(chunk) {
      try {
        decoder.push(chunk, false);
      } catch (err) {
        throw failure(err, false);
      }
    },
    flush() {
      try {
        decoder.push(new Uint8Array(0), true);
      } catch (err) {
        throw failure(err, true);
      }
    },
  });
}
