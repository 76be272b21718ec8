// The page's one way into the pull worker: start-up, requests with AbortSignal cancellation, and
// progress callbacks. Errors come back as LongshoreError (rebuilt from their JSON form). Nothing
// is waited on without a bound: the worker must say it is ready within `readyMs`, and a request
// with no progress for `stallMs` fails with its stage (watchdog.ts); a worker that died, never
// started or stalled is replaced by a fresh one for the next request.
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { RegistryNotice } from '../core/registry/rate-limit.ts';
import type { FromWorker, Phase, PullOutcome, PullRequest, ResolveSummary, SaveProgress, ToWorker, WorkerConfig } from './protocol.ts';
import { DEFAULT_READY_MS, DEFAULT_STALL_MS, StallWatch } from './watchdog.ts';
import { WorkerRpc } from './worker-rpc.ts';
import { hostLayerWorker } from './layer-host.ts';

export interface PullHooks {
  onPhase?: (phase: Phase) => void;
  onProgress?: (events: PullEvent[]) => void;
  onNotice?: (notice: RegistryNotice) => void;
  onSaveProgress?: (progress: SaveProgress) => void;
  /** The worker is ready to stream the archive as a download from `port` (see save/sw-client.ts). */
  onSaveStream?: (port: MessagePort, fileName: string, size: number | undefined) => void;
}
type Hooks = PullHooks;

export interface BridgeOptions {
  /** A request with no progress for this long fails (STALLED). */
  stallMs?: number;
  /** The worker must post 'ready' within this long of being created. */
  readyMs?: number;
  factory?: () => Worker;
  /** Starts a layer worker the pull worker asked for (default: layer-worker.ts). */
  layerFactory?: () => Worker;
}

const cancel = (id: number): ToWorker => ({ type: 'cancel', id });
const PHASE_STAGE: Record<Phase, string> = {
  resolving: 'resolving the manifest',
  downloading: 'downloading layers',
  assembling: 'assembling the archive',
};

export class PullBridge {
  #rpc!: WorkerRpc<ToWorker, Hooks>;
  #watch!: StallWatch;
  #readyTimer: ReturnType<typeof setTimeout> | undefined;
  #ready = false;
  /** The layer workers the current pull worker asked for (layer-host.ts): they go when it goes. */
  readonly #layers = new Set<() => void>();
  readonly #factory: () => Worker;
  readonly #layerFactory: (() => Worker) | undefined;
  readonly #stallMs: number;
  readonly #readyMs: number;

  constructor(
    readonly config: WorkerConfig,
    options: BridgeOptions | Worker = {},
  ) {
    const opts: BridgeOptions =
      typeof Worker !== 'undefined' && options instanceof Worker ? { factory: () => options } : (options as BridgeOptions);
    this.#factory = opts.factory ?? (() => new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'longshore-pull' }));
    this.#layerFactory = opts.layerFactory;
    this.#stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.#readyMs = opts.readyMs ?? DEFAULT_READY_MS;
    this.#spawn();
  }

  #spawn(): void {
    const rpc = new WorkerRpc<ToWorker, Hooks>(this.#factory(), 'pull');
    const watch = new StallWatch(this.#stallMs, (_id, error) => this.#replace(rpc, error));
    this.#rpc = rpc;
    this.#watch = watch;
    this.#ready = false;
    rpc.worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(rpc, watch, e.data);
    this.#readyTimer = setTimeout(() => {
      this.#replace(
        rpc,
        new LongshoreError(ErrorCode.Worker, `The pull worker did not start within ${Math.round(this.#readyMs / 1000)} s.`, {
          hint: 'Try again; if it keeps happening, reload the page. This browser may not run module workers (see "What this browser can do").',
          retryable: true,
        }),
      );
    }, this.#readyMs);
    rpc.send({ type: 'init', config: this.config });
  }

  /** Fail everything `rpc` had pending with `error` and stop it; the next request gets a new worker. */
  #replace(rpc: WorkerRpc<ToWorker, Hooks>, error: LongshoreError): void {
    if (rpc !== this.#rpc) return;
    clearTimeout(this.#readyTimer);
    this.#watch.stop();
    rpc.failAll(error);
    this.#stopLayers();
  }

  #stopLayers(): void {
    for (const stop of this.#layers) stop();
    this.#layers.clear();
  }

  #live(): WorkerRpc<ToWorker, Hooks> {
    if (this.#rpc.dead) {
      clearTimeout(this.#readyTimer);
      this.#watch.stop();
      this.#stopLayers();
      this.#spawn();
    }
    return this.#rpc;
  }

  #receive(rpc: WorkerRpc<ToWorker, Hooks>, watch: StallWatch, msg: FromWorker): void {
    if (rpc.dead) {
      if (msg.type === 'spawn-layer') {
        msg.control.close();
        msg.data.close();
      }
      return;
    }
    switch (msg.type) {
      case 'spawn-layer':
        this.#layers.add(hostLayerWorker(msg.control, msg.data, this.#layerFactory));
        return;
      case 'ready':
        this.#ready = true;
        clearTimeout(this.#readyTimer);
        return;
      case 'activity':
        return watch.activity(msg.id, msg.detail, msg.boundMs);
      case 'phase':
        watch.stage(msg.id, PHASE_STAGE[msg.phase]);
        return rpc.hooks(msg.id)?.onPhase?.(msg.phase);
      case 'progress':
        watch.progress(msg.id, msg.events);
        return rpc.hooks(msg.id)?.onProgress?.(msg.events);
      case 'notice':
        return rpc.hooks(msg.id)?.onNotice?.(msg.notice);
      case 'save-progress':
        // Writing the archive is progress too (the streamed save copies stored layers after the last arrived).
        watch.activity(msg.id, `writing the archive (${msg.progress.written} bytes so far)`);
        return rpc.hooks(msg.id)?.onSaveProgress?.(msg.progress);
      case 'save-stream':
        return rpc.hooks(msg.id)?.onSaveStream?.(msg.port, msg.fileName, msg.size);
      case 'resolved':
        watch.unwatch(msg.id);
        return rpc.settle(msg.id, msg.summary);
      case 'done':
        watch.unwatch(msg.id);
        return rpc.settle(msg.id, msg.outcome);
      case 'error':
        watch.unwatch(msg.id);
        return rpc.fail(msg.id, msg.error);
    }
  }

  /**
   * Send a request; when it stalls before any layer arrived, replace the worker and send it once
   * more (nothing was stored yet, so this repeats no work): a worker that froze (as Firefox's
   * did inside a nested `new Worker()`, layer-host.ts) is not waited on twice. A second stall is
   * the person's to see.
   */
  async #request<T>(stage: string, build: (id: number) => ToWorker, signal: AbortSignal | undefined, hooks: Hooks = {}): Promise<T> {
    try {
      return await this.#send<T>(stage, build, signal, hooks);
    } catch (err) {
      const e = err as LongshoreError;
      if (e.code !== ErrorCode.Stalled || e.data['progressed'] !== false || signal?.aborted) throw err;
      return this.#send<T>(stage, build, signal, hooks);
    }
  }

  #send<T>(stage: string, build: (id: number) => ToWorker, signal: AbortSignal | undefined, hooks: Hooks): Promise<T> {
    const rpc = this.#live();
    const watch = this.#watch;
    let id = 0;
    const promise = rpc.start<T>(
      (n) => {
        id = n;
        watch.watch(n, stage);
        if (!this.#ready) watch.activity(n, 'waiting for the pull worker to start (it has not said it is ready)');
        return build(n);
      },
      cancel,
      signal,
      hooks,
    );
    return promise.finally(() => watch.unwatch(id));
  }

  resolve(reference: string, options: { signal?: AbortSignal; credentials?: Record<string, Credentials> } = {}): Promise<ResolveSummary> {
    return this.#request(
      'looking up the name',
      (id) => ({ type: 'resolve', id, reference, ...(options.credentials ? { credentials: options.credentials } : {}) }),
      options.signal,
    );
  }

  pull(request: PullRequest, options: { signal?: AbortSignal } & Hooks = {}): Promise<PullOutcome> {
    const hooks: Hooks = {};
    if (options.onPhase) hooks.onPhase = options.onPhase;
    if (options.onProgress) hooks.onProgress = options.onProgress;
    if (options.onNotice) hooks.onNotice = options.onNotice;
    if (options.onSaveProgress) hooks.onSaveProgress = options.onSaveProgress;
    if (options.onSaveStream) hooks.onSaveStream = options.onSaveStream;
    return this.#request('resolving the manifest', (id) => ({ type: 'pull', id, request }), options.signal, hooks);
  }

  terminate(): void {
    clearTimeout(this.#readyTimer);
    this.#watch.stop();
    this.#rpc.terminate();
    this.#stopLayers();
  }
}
