// The page's one way into the inspect worker: start-up, requests with AbortSignal cancellation,
// session status callbacks. Errors come back as LongshoreError (rebuilt from their JSON form).
import { AbortedError, LongshoreError } from '../core/errors.ts';
import type { ListingLimits, ViewQuery, ViewRow } from '../core/listing/index.ts';
import type { ExportProgress, FileResult, FromInspectWorker, InspectSource, OpenedInspection, SessionStatus, ToInspectWorker, ViewId } from './inspect-protocol.ts';

interface Pending {
  resolve: (value: never) => void;
  reject: (err: LongshoreError) => void;
  onProgress?: (p: ExportProgress) => void;
}

export class InspectBridge {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<number, (status: SessionStatus) => void>();
  #nextId = 1;

  constructor(worker?: Worker) {
    this.#worker = worker ?? new Worker(new URL('./inspect-worker.ts', import.meta.url), { type: 'module', name: 'longshore-inspect' });
    this.#worker.onmessage = (e: MessageEvent<FromInspectWorker>) => this.#receive(e.data);
    this.#worker.onerror = (e) => {
      for (const [id, p] of this.#pending) {
        p.reject(new LongshoreError('INTERNAL', `The inspect worker crashed: ${e.message}`));
        this.#pending.delete(id);
      }
    };
  }

  #send(message: ToInspectWorker): void {
    this.#worker.postMessage(message);
  }

  #receive(msg: FromInspectWorker): void {
    if (msg.type === 'status') {
      this.#listeners.get(msg.status.session)?.(msg.status);
      return;
    }
    const p = this.#pending.get(msg.id);
    if (!p) return;
    switch (msg.type) {
      case 'progress':
        p.onProgress?.(msg.progress);
        return;
      case 'opened':
        this.#pending.delete(msg.id);
        (p.resolve as (v: OpenedInspection) => void)(msg.opened);
        return;
      case 'rows':
        this.#pending.delete(msg.id);
        (p.resolve as (v: { total: number; rows: ViewRow[] }) => void)({ total: msg.total, rows: msg.rows });
        return;
      case 'file':
        this.#pending.delete(msg.id);
        (p.resolve as (v: FileResult) => void)(msg.file);
        return;
      case 'error':
        this.#pending.delete(msg.id);
        p.reject(LongshoreError.fromJSON(msg.error));
    }
  }

  #start<T>(build: (id: number) => ToInspectWorker, signal?: AbortSignal, onProgress?: (p: ExportProgress) => void): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortedError());
      this.#pending.set(id, { resolve: resolve as (v: never) => void, reject, ...(onProgress ? { onProgress } : {}) });
      signal?.addEventListener('abort', () => {
        this.#send({ type: 'cancel', id });
        if (this.#pending.delete(id)) reject(new AbortedError());
      }, { once: true });
      this.#send(build(id));
    });
  }

  /** Open a pulled image or an archive file; `onStatus` hears the session's progress until close(). */
  async open(source: InspectSource, onStatus: (status: SessionStatus) => void, options: { signal?: AbortSignal; limits?: Partial<ListingLimits> } = {}): Promise<OpenedInspection> {
    const opened = await this.#start<OpenedInspection>((id) => ({ type: 'open', id, source, ...(options.limits ? { limits: options.limits } : {}) }), options.signal);
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
    this.#send({ type: 'close', session });
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

/** What the inspector's state needs of a bridge (tests pass a fake). */
export type InspectBridgeLike = Pick<InspectBridge, 'open' | 'query' | 'download' | 'export' | 'close'>;
