// Request bookkeeping shared by the page's worker bridges: ids, the pending map, AbortSignal
// cancellation (answered at once; the worker is told to stop) and failing everything if the
// worker dies (`error`), cannot read a message (`messageerror`), or is declared stuck by its
// bridge (`failAll`). Each bridge routes its own message types to `hooks`, `settle` and `fail`.
import { AbortedError, ErrorCode, LongshoreError, type ErrorJSON } from '../core/errors.ts';

interface Pending<H> {
  resolve: (value: unknown) => void;
  reject: (err: LongshoreError) => void;
  hooks: H;
}

export class WorkerRpc<To, H extends object = object> {
  readonly #pending = new Map<number, Pending<H>>();
  #nextId = 1;
  #dead: LongshoreError | undefined;

  constructor(
    readonly worker: Worker,
    readonly label: string,
  ) {
    worker.onerror = (e) => {
      // Reported to the person through the pending requests, so not an uncaught page error too.
      e.preventDefault();
      const where = e.filename ? ` (${e.filename}:${e.lineno})` : '';
      this.failAll(
        new LongshoreError(ErrorCode.Worker, `The ${label} worker stopped: ${e.message || 'it failed to load or crashed'}${where}.`, {
          hint: 'Try again. If it keeps happening, reload the page; this browser may lack something longshore needs (see "What this browser can do").',
          retryable: true,
        }),
      );
    };
    worker.onmessageerror = () => {
      this.failAll(
        new LongshoreError(ErrorCode.Worker, `The ${label} worker sent a message this page could not read (messageerror).`, {
          hint: 'Try again; if it repeats, reload the page.',
          retryable: true,
        }),
      );
    };
  }

  /** Whether the worker died; new requests then fail at once instead of waiting on it. */
  get dead(): LongshoreError | undefined {
    return this.#dead;
  }

  get pendingIds(): number[] {
    return [...this.#pending.keys()];
  }

  send(message: To): void {
    this.worker.postMessage(message);
  }

  /** Send the request `build(id)`; on abort, send `cancel(id)` and reject with AbortedError. */
  start<T>(build: (id: number) => To, cancel: (id: number) => To, signal?: AbortSignal, hooks: H = {} as H): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      if (this.#dead) return reject(this.#dead);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, hooks });
      signal?.addEventListener(
        'abort',
        () => {
          if (!this.#dead) this.send(cancel(id));
          // Answer at once; the worker's own answer for this id is then ignored.
          if (this.#pending.delete(id)) reject(new AbortedError());
        },
        { once: true },
      );
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

  fail(id: number, error: ErrorJSON | LongshoreError): void {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.reject(error instanceof LongshoreError ? error : LongshoreError.fromJSON(error));
  }

  /** Fail every pending request with `error` and stop the worker: it is not waited on again. */
  failAll(error: LongshoreError): void {
    this.#dead ??= error;
    for (const id of [...this.#pending.keys()]) this.fail(id, error);
    this.worker.terminate();
  }

  terminate(): void {
    this.worker.terminate();
  }
}
