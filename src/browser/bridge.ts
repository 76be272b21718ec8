// The page's one way into the pull worker: start-up, requests with AbortSignal cancellation, and
// progress callbacks. Errors come back as LongshoreError (rebuilt from their JSON form).
import { AbortedError, LongshoreError } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { FromWorker, Phase, PullOutcome, PullRequest, ResolveSummary, ToWorker, WorkerConfig } from './protocol.ts';

interface Pending {
  resolve: (value: never) => void;
  reject: (err: LongshoreError) => void;
  onPhase?: (phase: Phase) => void;
  onProgress?: (events: PullEvent[]) => void;
}

export class PullBridge {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(config: WorkerConfig, worker?: Worker) {
    this.#worker = worker ?? new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'longshore-pull' });
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(e.data);
    this.#worker.onerror = (e) => {
      for (const [id, p] of this.#pending) {
        p.reject(new LongshoreError('INTERNAL', `The pull worker crashed: ${e.message}`));
        this.#pending.delete(id);
      }
    };
    this.#send({ type: 'init', config });
  }

  #send(message: ToWorker): void {
    this.#worker.postMessage(message);
  }

  #receive(msg: FromWorker): void {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    switch (msg.type) {
      case 'phase':
        p.onPhase?.(msg.phase);
        return;
      case 'progress':
        p.onProgress?.(msg.events);
        return;
      case 'resolved':
        this.#pending.delete(msg.id);
        (p.resolve as (v: ResolveSummary) => void)(msg.summary);
        return;
      case 'done':
        this.#pending.delete(msg.id);
        (p.resolve as (v: PullOutcome) => void)(msg.outcome);
        return;
      case 'error':
        this.#pending.delete(msg.id);
        p.reject(LongshoreError.fromJSON(msg.error));
    }
  }

  #start<T>(build: (id: number) => ToWorker, signal: AbortSignal | undefined, hooks: Omit<Pending, 'resolve' | 'reject'> = {}): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      this.#pending.set(id, { resolve: resolve as (v: never) => void, reject, ...hooks });
      signal?.addEventListener('abort', () => {
        this.#send({ type: 'cancel', id });
        // Answer at once; the worker's own error message for this id is then ignored.
        if (this.#pending.delete(id)) reject(new AbortedError());
      }, { once: true });
      this.#send(build(id));
    });
  }

  resolve(reference: string, options: { signal?: AbortSignal; credentials?: Record<string, Credentials> } = {}): Promise<ResolveSummary> {
    return this.#start((id) => ({ type: 'resolve', id, reference, ...(options.credentials ? { credentials: options.credentials } : {}) }), options.signal);
  }

  pull(request: PullRequest, options: { signal?: AbortSignal; onPhase?: (p: Phase) => void; onProgress?: (events: PullEvent[]) => void } = {}): Promise<PullOutcome> {
    const hooks: Omit<Pending, 'resolve' | 'reject'> = {};
    if (options.onPhase) hooks.onPhase = options.onPhase;
    if (options.onProgress) hooks.onProgress = options.onProgress;
    return this.#start((id) => ({ type: 'pull', id, request }), options.signal, hooks);
  }

  terminate(): void {
    this.#worker.terminate();
  }
}
