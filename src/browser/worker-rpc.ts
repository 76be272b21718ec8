// Request bookkeeping shared by the page's worker bridges: ids, the pending map, AbortSignal
// cancellation (answered at once; the worker is told to stop) and failing everything if the
// worker crashes. Each bridge routes its own message types to `hooks`, `settle` and `fail`.
import { AbortedError, ErrorCode, LongshoreError, type ErrorJSON } from '../core/errors.ts';

interface Pending<H> {
  resolve: (value: unknown) => void;
  reject: (err: LongshoreError) => void;
  hooks: H;
}

export class WorkerRpc<To, H extends object = object> {
  readonly #pending = new Map<number, Pending<H>>();
  #nextId = 1;

  constructor(readonly worker: Worker, label: string) {
    worker.onerror = (e) => {
      for (const [id, p] of this.#pending) {
        p.reject(new LongshoreError(ErrorCode.Internal, `The ${label} worker crashed: ${e.message}`));
        this.#pending.delete(id);
      }
    };
  }

  send(message: To): void {
    this.worker.postMessage(message);
  }

  /** Send the request `build(id)`; on abort, send `cancel(id)` and reject with AbortedError. */
  start<T>(build: (id: number) => To, cancel: (id: number) => To, signal?: AbortSignal, hooks: H = {} as H): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, hooks });
      signal?.addEventListener('abort', () => {
        this.send(cancel(id));
        // Answer at once; the worker's own answer for this id is then ignored.
        if (this.#pending.delete(id)) reject(new AbortedError());
      }, { once: true });
      this.send(build(id));
    });
  }

  hooks(id: number): H | undefined {
    return this.#pending.get(id)?.hooks;
  }

  settle(id: number, value: unknown): void {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.resolve(value);
  }

  fail(id: number, error: ErrorJSON): void {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.reject(LongshoreError.fromJSON(error));
  }

  terminate(): void {
    this.worker.terminate();
  }
}
