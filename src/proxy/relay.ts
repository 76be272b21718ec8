// Relays a response body as a web stream while watching it: counts bytes, fails a body that
// makes no progress for `idleMs` (an upstream that stalls or a client that stops reading: either
// way the upstream connection would be held), and reports once when it ends, however it ends.
// A body whose client asked for it (`endOnCut`) ends cleanly instead of failing.
import { UpstreamError, classifyFailure, type UpstreamFailure } from './upstream-error.ts';

export interface BodyWatch {
  idleMs: number;
  /** Upstream host, for messages. */
  host: string;
  /** Called exactly once: bytes relayed, and why it stopped early (undefined = complete). */
  onEnd(bytes: number, failure?: UpstreamFailure): void;
  /**
   * When the upstream breaks off (or stalls past idleMs), end the client's body cleanly rather than
   * fail it: the client asked for this (PROXY_ON_CUT_HEADER) and checks the length itself.
   */
  endOnCut?: boolean;
}

/** A body relay: the generic one below, or node-fetch.ts's socket-to-socket one. */
export type Relay = (body: ReadableStream<Uint8Array>, watch: BodyWatch) => ReadableStream<Uint8Array>;

export const webRelay: Relay = (body, watch) => {
  const reader = body.getReader();
  let bytes = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  const end = (failure?: UpstreamFailure) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    watch.onEnd(bytes, failure);
  };
  const arm = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const err = new UpstreamError('body-timeout', `the body from ${watch.host} made no progress for ${watch.idleMs} ms`);
      if (watch.endOnCut) controller.close();
      else controller.error(err);
      reader.cancel(err).catch(() => undefined);
      end('body-timeout');
    }, watch.idleMs);
  };
  return new ReadableStream<Uint8Array>(
    {
      start: arm,
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (ended) return;
          if (done) {
            controller.close();
            end();
            return;
          }
          bytes += value.byteLength;
          controller.enqueue(value);
          arm(controller);
        } catch (err) {
          if (ended) return;
          if (watch.endOnCut) controller.close();
          else controller.error(err);
          end(classifyFailure(err, watch.host).kind);
        }
      },
      cancel(reason) {
        reader.cancel(reason).catch(() => undefined);
        end('client-gone');
      },
    },
    { highWaterMark: 0 },
  );
};
