// Turn an archive plan into one byte stream, opening stored blobs as their turn comes (Node, CLI,
// tests). The browser writes a plan while the pull runs instead (stream.ts, src/browser/save/).
import { ErrorCode, LongshoreError } from '../errors.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { ArchivePlan } from './types.ts';

export function assembleStream(plan: ArchivePlan, store: BlobStore): ReadableStream<Uint8Array> {
  let i = 0;
  let current: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          if (current) {
            const r = await current.read();
            if (!r.done) return controller.enqueue(r.value);
            current = undefined;
          }
          const part = plan.parts[i++];
          if (part === undefined) return controller.close();
          if (part instanceof Uint8Array) return controller.enqueue(part);
          const stream = await store.open(part.key);
          if (!stream) throw new LongshoreError(ErrorCode.Store, `Blob ${part.key} is not in the store.`, { data: { key: part.key } });
          current = stream.getReader();
        }
      },
      async cancel(reason) {
        await current?.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
