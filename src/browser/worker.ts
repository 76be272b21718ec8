// The pull worker: heavy work (fetching, hashing, decompression, IndexedDB, writing the archive to
// its destination) runs here, off the UI thread. It speaks protocol.ts; progress is coalesced to a
// few messages a second.
/// <reference lib="webworker" />
import { LongshoreError, isAbortError, AbortedError } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import { IdbBlobStore } from './idb-store.ts';
import { PullJournal } from './journal.ts';
import { ImageCatalog } from './image-catalog.ts';
import { pullJob, resolveJob } from './pull-job.ts';
import { LayerPool, layerPoolSize } from './layer-pool.ts';
import { PortWorker } from './layer-port.ts';
import { DEFAULT_CONCURRENCY } from '../core/pull.ts';
import type { FromWorker, SaveProgress, ToWorker, WorkerConfig } from './protocol.ts';
import { describeRequest } from './watchdog.ts';
import type { RegistryNotice } from '../core/registry/rate-limit.ts';

declare const self: DedicatedWorkerGlobalScope;

/**
 * Progress reaches the page at most this often, layer and save figures together: each message
 * makes the page draw a frame (layout, paint, composite: ~3 ms at 13 frames a second cost a
 * 100 MB pull over a 1 MB/s link 5 of its 14 CPU seconds in Chromium).
 */
const PROGRESS_INTERVAL_MS = 250;
const STORAGE_BOUND_MS = 10_000;
// Files of blobs deleted during a pull go at the sweep after it (a streamed download may still read them).
const store = new IdbBlobStore(undefined, { lateRemoval: true });
const journal = new PullJournal();
const catalog = new ImageCatalog();
let config: WorkerConfig = { proxyBase: self.location.origin };
const jobs = new Map<number, AbortController>();
let swept = false;
let pool: LayerPool | undefined;

/** Started on the first pull; its workers are the page's (layer-host.ts), reached over ports. */
function layerPool(): LayerPool | undefined {
  if (pool) return pool;
  const size = layerPoolSize(config.concurrency ?? DEFAULT_CONCURRENCY);
  if (size === 0 || typeof MessageChannel === 'undefined') return undefined;
  pool = new LayerPool(
    size,
    () => new PortWorker((control, data) => post({ type: 'spawn-layer', control, data }, [control, data])) as unknown as Worker,
  );
  return pool;
}

function post(message: FromWorker, transfer: Transferable[] = []): void {
  self.postMessage(message, transfer);
}

/** The worker's fetch, telling the page what request `id` now waits for. */
function watchedFetch(id: number): typeof fetch {
  return (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    post({ type: 'activity', id, detail: `waiting for ${describeRequest(url)}` });
    return self.fetch(input, init);
  };
}

function fail(id: number, err: unknown): void {
  const e = isAbortError(err) ? new AbortedError() : LongshoreError.from(err);
  post({ type: 'error', id, error: e.toJSON() });
}

/** Keep the latest event per layer and flush a few times a second. */
function progressBatcher(id: number) {
  let queued: PullEvent[] = [];
  const latest = new Map<number, number>();
  let saved: SaveProgress | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (queued.length) post({ type: 'progress', id, events: queued });
    if (saved) post({ type: 'save-progress', id, progress: saved });
    queued = [];
    saved = undefined;
    latest.clear();
  };
  return {
    /** The archive's progress: the latest goes with the next flush. */
    save(progress: SaveProgress) {
      saved = progress;
      timer ??= setTimeout(flush, PROGRESS_INTERVAL_MS);
    },
    push(event: PullEvent) {
      if (event.type === 'layer' && event.state === 'downloading') {
        const at = latest.get(event.index);
        if (at !== undefined) {
          queued[at] = event;
          return;
        }
        latest.set(event.index, queued.length);
      }
      queued.push(event);
      timer ??= setTimeout(flush, PROGRESS_INTERVAL_MS);
    },
    flush() {
      if (timer !== undefined) clearTimeout(timer);
      flush();
    },
  };
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const msg = e.data;
  switch (msg.type) {
    case 'init':
      config = msg.config;
      return;
    case 'cancel':
      jobs.get(msg.id)?.abort();
      return;
    case 'resolve': {
      post({ type: 'activity', id: msg.id, detail: 'the pull worker is parsing the name' });
      const ac = new AbortController();
      jobs.set(msg.id, ac);
      try {
        const onNotice = (notice: RegistryNotice) => post({ type: 'notice', id: msg.id, notice });
        const summary = await resolveJob(
          { config, fetch: watchedFetch(msg.id), signal: ac.signal, onNotice, catalog },
          msg.reference,
          msg.credentials,
        );
        post({ type: 'resolved', id: msg.id, summary });
      } catch (err) {
        fail(msg.id, err);
      } finally {
        jobs.delete(msg.id);
      }
      return;
    }
    case 'pull': {
      post({ type: 'activity', id: msg.id, detail: 'the pull worker is checking the request' });
      const ac = new AbortController();
      jobs.set(msg.id, ac);
      const progress = progressBatcher(msg.id);
      try {
        if (!swept) {
          swept = true;
          // A local database answers in milliseconds: a tighter bound than a registry's.
          post({
            type: 'activity',
            id: msg.id,
            detail: "waiting for the browser's storage (IndexedDB) to list unfinished downloads",
            boundMs: STORAGE_BOUND_MS,
          });
          await store.sweep().catch(() => 0);
        }
        const outcome = await pullJob(
          {
            config,
            store,
            fetch: watchedFetch(msg.id),
            signal: ac.signal,
            onPhase: (phase) => {
              progress.flush();
              post({ type: 'phase', id: msg.id, phase });
            },
            onProgress: (event) => progress.push(event),
            onNotice: (notice) => post({ type: 'notice', id: msg.id, notice }),
            onSaveProgress: (p) => progress.save(p),
            onSaveStream: (port, fileName, size) => post({ type: 'save-stream', id: msg.id, port, fileName, size }, [port]),
            journal,
            ...(layerPool() ? { pool: layerPool()! } : {}),
            catalog,
          },
          msg.request,
        );
        progress.flush();
        post({ type: 'done', id: msg.id, outcome });
      } catch (err) {
        progress.flush();
        fail(msg.id, ac.signal.aborted ? new AbortedError() : err);
      } finally {
        jobs.delete(msg.id);
        // The staged files of blobs this pull deleted (keep a copy off): its download has read them.
        void store.sweep().catch(() => 0);
      }
      return;
    }
  }
};

post({ type: 'ready' });
