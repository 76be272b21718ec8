// One entry's content out of a layer's tar, by its ordinal: the stream is read up to the entry,
// its body is handed over as a stream, and the rest of the layer is never read.
import { ErrorCode, LongshoreError } from '../errors.ts';
import type { TarEntryHeader } from '../tar/header.ts';
import { readTar } from '../tar/reader.ts';

export async function openEntryBody(
  tar: ReadableStream<Uint8Array>,
  ordinal: number,
  options: { signal?: AbortSignal; maxPaxBytes?: number } = {},
): Promise<{ header: TarEntryHeader; body: ReadableStream<Uint8Array> }> {
  const entries = readTar(tar, {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.maxPaxBytes ? { maxPaxBytes: options.maxPaxBytes } : {}),
  });
  let index = 0;
  for (;;) {
    const next = await entries.next();
    if (next.done) {
      throw new LongshoreError(ErrorCode.Format, `The layer has no entry number ${ordinal + 1}.`, { data: { ordinal } });
    }
    if (index++ !== ordinal) continue;
    const reader = next.value.body().getReader();
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) {
              controller.close();
              await entries.return();
            } else controller.enqueue(value.slice());
          } catch (err) {
            controller.error(err);
            await entries.return().catch(() => undefined);
          }
        },
        async cancel() {
          await reader.cancel().catch(() => undefined);
          await entries.return().catch(() => undefined);
        },
      },
      { highWaterMark: 0 },
    );
    return { header: next.value.header, body };
  }
}
