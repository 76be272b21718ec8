// The page's one way into the inspect worker: start-up, requests with AbortSignal cancellation,
// session status callbacks. Errors come back as LongshoreError (rebuilt from their JSON form).
import type { ListingLimits, ViewQuery, ViewRow } from '../core/listing/index.ts';
import { WorkerRpc } from './worker-rpc.ts';
import type {
  ExportProgress,
  FileResult,
  FromInspectWorker,
  InspectSource,
  OpenedInspection,
  SessionStatus,
  ToInspectWorker,
  ViewId,
} from './inspect-protocol.ts';

interface Hooks {
  onProgress?: (p: ExportProgress) => void;
}

const cancel = (id: number): ToInspectWorker => ({ type: 'cancel', id });

export class InspectBridge {
  readonly #rpc: WorkerRpc<ToInspectWorker, Hooks>;
  readonly #listeners = new Map<number, (status: SessionStatus) => void>();

  constructor(worker?: Worker) {
    this.#rpc = new WorkerRpc(
      worker ?? new Worker(new URL('./inspect-worker.ts', import.meta.url), { type: 'module', name: 'longshore-inspect' }),
      'inspect',
    );
    this.#rpc.worker.onmessage = (e: MessageEvent<FromInspectWorker>) => this.#receive(e.data);
  }

  #receive(msg: FromInspectWorker): void {
    switch (msg.type) {
      case 'status':
        return this.#listeners.get(msg.status.session)?.(msg.status);
      case 'progress':
        return this.#rpc.hooks(msg.id)?.onProgress?.(msg.progress);
      case 'opened':
        return this.#rpc.settle(msg.id, msg.opened);
      case 'rows':
        return this.#rpc.settle(msg.id, { total: msg.total, rows: msg.rows });
      case 'file':
        return this.#rpc.settle(msg.id, msg.file);
      case 'error':
        return this.#rpc.fail(msg.id, msg.error);
    }
  }

  #start<T>(build: (id: number) => ToInspectWorker, signal?: AbortSignal, onProgress?: (p: ExportProgress) => void): Promise<T> {
    return this.#rpc.start<T>(build, cancel, signal, onProgress ? { onProgress } : {});
  }

  /** Open a pulled image or an archive file; `onStatus` hears the session's progress until close(). */
  async open(
    source: InspectSource,
    onStatus: (status: SessionStatus) => void,
    options: { signal?: AbortSignal; limits?: Partial<ListingLimits> } = {},
  ): Promise<OpenedInspection> {
    const opened = await this.#start<OpenedInspection>(
      (id) => ({ type: 'open', id, source, ...(options.limits ? { limits: options.limits } : {}) }),
      options.signal,
    );
    this.#listeners.set(opened.session, onStatus);
    return opened;
  }

  query(session: number, view: ViewId, query: ViewQuery, start: number, count: number): Promise<{ total: number; rows: ViewRow[] }> {
    return this.#start((id) => ({ type: 'query', id, session, view, query, start, count }));
  }

  download(session: number, layer: number, ordinal: number, options: { signal?: AbortSignal } = {}): Promise<FileResult> {
    return this.#start((id) => ({ type: 'download', id, session, layer, ordinal }), options.signal);
  }

  export(session: number, options: { signal?: AbortSignal; onProgress?: (p: ExportProgress) => void } = {}): Promise<FileResult> {
    return this.#start((id) => ({ type: 'export', id, session }), options.signal, options.onProgress);
  }

  close(session: number): void {
    this.#listeners.delete(session);
    this.#rpc.send({ type: 'close', session });
  }

  terminate(): void {
    this.#rpc.terminate();
  }
}

/** What the inspector's state needs of a bridge (tests pass a fake). */
export type InspectBridgeLike = Pick<InspectBridge, 'open' | 'query' | 'download' | 'export' | 'close'>;
