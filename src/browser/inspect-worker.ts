// The inspect worker: listings, merges, downloads and exports run here, off the UI thread. Layer
// blobs come from IndexedDB (a pull) or are slices of a local File (an archive, never uploaded).
// Outputs are streamed into IndexedDB segments and handed over as disk-backed Blobs, so neither
// a big file nor the export is ever whole in memory. It speaks inspect-protocol.ts.
/// <reference lib="webworker" />
import { AbortedError, ErrorCode, LongshoreError, isAbortError } from '../core/errors.ts';
import { ARCHIVE_FORMAT_LABEL, blobRandomAccess, openArchive } from '../core/archive/index.ts';
import type { InspectTarget, ListingLimits } from '../core/listing/index.ts';
import { zstdDecompressStream } from '../core/zstd.ts';
import { IdbBlobStore } from './idb-store.ts';
import { InspectSession, type LayerBlobSource } from './inspect-session.ts';
import type { FromInspectWorker, OpenedInspection, InspectSource, ToInspectWorker } from './inspect-protocol.ts';

declare const self: DedicatedWorkerGlobalScope;

const STATUS_INTERVAL_MS = 100;
/** Pulled blobs (read only here). */
const blobs = new IdbBlobStore();
/** Downloads and exports on their way to the page; cleared when the worker starts. */
const outputs = new IdbBlobStore('longshore-inspect');
const sessions = new Map<number, { session: InspectSession; outputs: string[]; timer: ReturnType<typeof setTimeout> | undefined }>();
const jobs = new Map<number, AbortController>();
let nextSession = 1;
const cleared = (async () => {
  for (const { key } of await outputs.list().catch(() => [])) await outputs.delete(key).catch(() => undefined);
})();

function post(message: FromInspectWorker): void {
  self.postMessage(message);
}

function fail(id: number, err: unknown): void {
  const e = isAbortError(err) ? new AbortedError() : LongshoreError.from(err);
  post({ type: 'error', id, error: e.toJSON() });
}

function storedSources(target: InspectTarget): LayerBlobSource[] {
  return target.layers.map((layer, i) => ({
    async open() {
      const blob = (await blobs.getBlob(layer.digest)) ?? (layer.diffId ? await blobs.getBlob(layer.diffId) : undefined);
      if (!blob) {
        throw new LongshoreError(ErrorCode.Store, `Layer ${i + 1} (${layer.digest}) is not in the browser cache.`, {
          hint: 'Pull the image again; the browser may have evicted storage.',
          retryable: true,
        });
      }
      return blob.stream();
    },
  }));
}

function fileName(reference: string): string {
  return (
    reference
      .replace(/^[a-z]+:\/\//, '')
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'image'
  );
}

async function open(id: number, source: InspectSource, limits: Partial<ListingLimits> | undefined): Promise<OpenedInspection> {
  let target: InspectTarget;
  let layers: LayerBlobSource[];
  let archive: OpenedInspection['archive'];
  if (source.kind === 'stored') {
    target = source.target;
    layers = storedSources(target);
  } else {
    const opened = await openArchive(blobRandomAccess(source.file));
    const index = Math.min(Math.max(source.image ?? 0, 0), opened.images.length - 1);
    const image = opened.images[index]!;
    target = image.target;
    layers = image.layers.map((l) => ({ open: async () => l.open() }));
    archive = {
      fileName: source.file.name,
      format: opened.format,
      formatLabel: ARCHIVE_FORMAT_LABEL[opened.format],
      images: opened.images.map((i) => i.name),
      image: index,
    };
  }
  const sessionId = nextSession++;
  const record = {
    session: undefined as unknown as InspectSession,
    outputs: [] as string[],
    timer: undefined as ReturnType<typeof setTimeout> | undefined,
  };
  const flush = () => {
    record.timer = undefined;
    if (sessions.has(sessionId)) post({ type: 'status', status: record.session.status() });
  };
  record.session = new InspectSession({
    id: sessionId,
    layers,
    name: fileName(archive ? archive.fileName.replace(/\.tar$/, '') : target.reference),
    ...(limits ? { limits } : {}),
    zstd: zstdDecompressStream,
    toBlob: async (stream, type) => {
      await cleared;
      const key = `out:${sessionId}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
      record.outputs.push(key);
      await outputs.put(key, stream);
      const blob = await outputs.getBlob(key);
      if (!blob) throw new LongshoreError(ErrorCode.Store, 'The browser lost the file while it was being written.', { retryable: true });
      return type ? new Blob([blob], { type }) : blob;
    },
    onChange: () => {
      record.timer ??= setTimeout(flush, STATUS_INTERVAL_MS);
    },
  });
  sessions.set(sessionId, record);
  void id;
  return { session: sessionId, target, ...(archive ? { archive } : {}) };
}

function close(sessionId: number): void {
  const record = sessions.get(sessionId);
  if (!record) return;
  sessions.delete(sessionId);
  record.session.close();
  if (record.timer !== undefined) clearTimeout(record.timer);
  for (const key of record.outputs) void outputs.delete(key).catch(() => undefined);
}

function session(id: number): InspectSession {
  const record = sessions.get(id);
  if (!record) throw new LongshoreError(ErrorCode.InvalidArgument, 'That inspection was closed.', { hint: 'Open the image again.' });
  return record.session;
}

self.onmessage = async (e: MessageEvent<ToInspectWorker>) => {
  const msg = e.data;
  switch (msg.type) {
    case 'cancel':
      jobs.get(msg.id)?.abort();
      return;
    case 'close':
      close(msg.session);
      return;
    case 'query':
      try {
        const { total, rows } = session(msg.session).query(msg.view, msg.query, msg.start, msg.count);
        post({ type: 'rows', id: msg.id, total, rows });
      } catch (err) {
        fail(msg.id, err);
      }
      return;
    case 'open':
    case 'download':
    case 'export': {
      const ac = new AbortController();
      jobs.set(msg.id, ac);
      try {
        if (msg.type === 'open') {
          post({ type: 'opened', id: msg.id, opened: await open(msg.id, msg.source, msg.limits) });
        } else if (msg.type === 'download') {
          post({ type: 'file', id: msg.id, file: await session(msg.session).download(msg.layer, msg.ordinal, ac.signal) });
        } else {
          const file = await session(msg.session).export({
            signal: ac.signal,
            onProgress: (progress) => post({ type: 'progress', id: msg.id, progress }),
          });
          post({ type: 'file', id: msg.id, file });
        }
      } catch (err) {
        fail(msg.id, ac.signal.aborted ? new AbortedError() : err);
      } finally {
        jobs.delete(msg.id);
      }
      return;
    }
  }
};
