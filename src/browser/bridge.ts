// The page's one way into the pull worker: start-up, requests with AbortSignal cancellation, and
// progress callbacks. Errors come back as LongshoreError (rebuilt from their JSON form).
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { RegistryNotice } from '../core/registry/rate-limit.ts';
import type { FromWorker, Phase, PullOutcome, PullRequest, ResolveSummary, SaveProgress, ToWorker, WorkerConfig } from './protocol.ts';
import { WorkerRpc } from './worker-rpc.ts';

export interface PullHooks {
  onPhase?: (phase: Phase) => void;
  onProgress?: (events: PullEvent[]) => void;
  onNotice?: (notice: RegistryNotice) => void;
  onSaveProgress?: (progress: SaveProgress) => void;
  /** The worker is ready to stream the archive as a download from `port` (see save/sw-client.ts). */
  onSaveStream?: (port: MessagePort, fileName: string, size: number | undefined) => void;
}
type Hooks = PullHooks;

const cancel = (id: number): ToWorker => ({ type: 'cancel', id });

export class PullBridge {
  readonly #rpc: WorkerRpc<ToWorker, Hooks>;

  constructor(config: WorkerConfig, worker?: Worker) {
    this.#rpc = new WorkerRpc(worker ?? new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'longshore-pull' }), 'pull');
    this.#rpc.worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(e.data);
    this.#rpc.send({ type: 'init', config });
  }

  #receive(msg: FromWorker): void {
    switch (msg.type) {
      case 'phase':
        return this.#rpc.hooks(msg.id)?.onPhase?.(msg.phase);
      case 'progress':
        return this.#rpc.hooks(msg.id)?.onProgress?.(msg.events);
      case 'notice':
        return this.#rpc.hooks(msg.id)?.onNotice?.(msg.notice);
      case 'save-progress':
        return this.#rpc.hooks(msg.id)?.onSaveProgress?.(msg.progress);
      case 'save-stream':
        return this.#rpc.hooks(msg.id)?.onSaveStream?.(msg.port, msg.fileName, msg.size);
      case 'resolved':
        return this.#rpc.settle(msg.id, msg.summary);
      case 'done':
        return this.#rpc.settle(msg.id, msg.outcome);
      case 'error':
        return this.#rpc.fail(msg.id, msg.error);
    }
  }

  resolve(reference: string, options: { signal?: AbortSignal; credentials?: Record<string, Credentials> } = {}): Promise<ResolveSummary> {
    return this.#rpc.start((id) => ({ type: 'resolve', id, reference, ...(options.credentials ? { credentials: options.credentials } : {}) }), cancel, options.signal);
  }

  pull(request: PullRequest, options: { signal?: AbortSignal } & Hooks = {}): Promise<PullOutcome> {
    const hooks: Hooks = {};
    if (options.onPhase) hooks.onPhase = options.onPhase;
    if (options.onProgress) hooks.onProgress = options.onProgress;
    if (options.onNotice) hooks.onNotice = options.onNotice;
    if (options.onSaveProgress) hooks.onSaveProgress = options.onSaveProgress;
    if (options.onSaveStream) hooks.onSaveStream = options.onSaveStream;
    return this.#rpc.start((id) => ({ type: 'pull', id, request }), cancel, options.signal, hooks);
  }

  terminate(): void {
    this.#rpc.terminate();
  }
}
