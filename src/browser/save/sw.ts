// The service worker that turns a pull into a streamed download (browsers without File System
// Access, or where the picker was refused). The page registers a download (a MessagePort to the
// pull worker, the file name, the planned size); a hidden frame then navigates to
// `<scope><id>/<name>`, and this worker answers with a Response whose body is fed from the port:
// Content-Disposition: attachment makes it a download, Content-Length (when known) lets the browser
// show progress, and an error from the pull errors the body, so the browser marks it failed.
// Built by Vite as its own entry (save-sw.js, no imports at run time: a classic script).
/// <reference lib="webworker" />
import type { FromSaveWorker, SaveRegistration, ToSaveWorker } from './types.ts';

declare const self: ServiceWorkerGlobalScope;

/** Bytes the pull worker may send ahead of what the browser has taken. */
const WINDOW_BYTES = 8 * 1024 * 1024;
/** A registered download nobody fetched within this time is dropped. */
const UNCLAIMED_MS = 60_000;

const pending = new Map<string, { reg: SaveRegistration; at: number }>();

self.addEventListener('install', () => {
  void self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('message', (event) => {
  const reg = event.data as SaveRegistration | { type?: string };
  // Other messages (the page's keep-alive pings) only keep this worker running.
  if (reg?.type !== 'longshore-save' || !('port' in reg)) return;
  const now = Date.now();
  for (const [id, p] of pending) if (now - p.at > UNCLAIMED_MS) pending.delete(id);
  pending.set(reg.id, { reg, at: now });
  (event.source as Client | null)?.postMessage({ type: 'longshore-save-ready', id: reg.id });
});

self.addEventListener('fetch', (event) => {
  const scope = new URL(self.registration.scope).pathname;
  const url = new URL(event.request.url);
  if (!url.pathname.startsWith(scope)) return;
  const id = decodeURIComponent(url.pathname.slice(scope.length).split('/')[0] ?? '');
  const p = pending.get(id);
  if (!p) {
    event.respondWith(
      new Response('This download is no longer available. Pull again.', {
        status: 404,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      }),
    );
    return;
  }
  pending.delete(id);
  const { reg } = p;
  const headers = new Headers({
    'content-type': 'application/x-tar',
    'content-disposition': contentDisposition(reg.fileName),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  if (reg.size !== undefined) headers.set('content-length', String(reg.size));
  event.respondWith(new Response(relay(reg.port), { headers }));
});

/** Buffers for reading stored blobs, reused once the download has taken what they held. */
const BLOB_READ_BYTES = 1024 * 1024;

/**
 * The body: chunks from the port, credit back as the browser reads them.
 *
 * Buffers are reused rather than left to the collector (a 1.5 GB pull is 1.5 GB of them). The
 * browser reads a body like this one chunk at a time and asks for the next (pull, with a
 * high-water mark of 0) only once it has taken all of the last; a chunk older than the last two
 * handed over (one more than needed, for a reader that asks ahead) is therefore done with, and its
 * buffer goes back to the pull worker (a chunk it sent) or is read into again (a stored blob's,
 * read with a BYOB reader where Blob streams are byte streams).
 */
function relay(port: MessagePort): ReadableStream<Uint8Array> {
  const queue: (Uint8Array | Blob)[] = [];
  let reading: { read: () => Promise<ReadableStreamReadResult<Uint8Array>>; cancel: () => Promise<void> } | undefined;
  /** Chunks handed to the browser, oldest first, and whose buffer each was. */
  const handed: { chunk: Uint8Array; fromPort: boolean }[] = [];
  const spare: ArrayBuffer[] = [];
  const retire = () => {
    while (handed.length > 2) {
      const { chunk, fromPort } = handed.shift()!;
      const buffer = chunk.buffer as ArrayBuffer;
      if (buffer.byteLength === 0) continue;
      if (fromPort) post({ t: 'back', b: buffer }, [buffer]);
      else if (buffer.byteLength === BLOB_READ_BYTES && spare.length < 4) spare.push(buffer);
    }
  };
  let ended = false;
  let failure: string | undefined;
  let wake: (() => void) | undefined;
  const post = (m: FromSaveWorker, transfer: Transferable[] = []) => port.postMessage(m, transfer);
  port.onmessage = (e: MessageEvent<ToSaveWorker>) => {
    const m = e.data;
    if (m.t === 'chunk' || m.t === 'blob') queue.push(m.b);
    else if (m.t === 'end') ended = true;
    else failure = m.message;
    const w = wake;
    wake = undefined;
    w?.();
  };
  // The pull worker went away (its page was closed or reloaded) without a word: fail the download
  // rather than leave it waiting. (MessagePort's close event is recent; without it the download
  // fails when the browser stops this service worker.)
  port.addEventListener('close', () => {
    if (!ended) failure ??= 'the page that was pulling this image was closed';
    const w = wake;
    wake = undefined;
    w?.();
  });
  return new ReadableStream<Uint8Array>(
    {
      start() {
        post({ t: 'credit', n: WINDOW_BYTES });
      },
      async pull(controller) {
        retire();
        for (;;) {
          if (failure !== undefined) {
            await reading?.cancel().catch(() => undefined);
            controller.error(new Error(failure));
            port.close();
            return;
          }
          if (reading) {
            // A stored blob, read here chunk by chunk as the download takes it.
            const { done, value } = await reading.read();
            if (!done) {
              if (value.byteLength === 0) continue;
              controller.enqueue(value);
              handed.push({ chunk: value, fromPort: false });
              post({ t: 'credit', n: value.byteLength });
              return;
            }
            reading = undefined;
            // Read to its end: the pull may remove the blob's file (keep a copy off).
            post({ t: 'read' });
            continue;
          }
          const next = queue.shift();
          if (next instanceof Blob) {
            reading = blobReader(next, spare);
            continue;
          }
          if (next) {
            controller.enqueue(next);
            handed.push({ chunk: next, fromPort: true });
            post({ t: 'credit', n: next.byteLength });
            return;
          }
          if (ended) break;
          await new Promise<void>((resolve) => (wake = resolve));
        }
        controller.close();
        post({ t: 'done' });
        port.close();
      },
      cancel() {
        post({ t: 'cancel' });
        port.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** Reads `blob` into buffers from `spare` (a BYOB reader) where its stream is a byte stream; else as it comes. */
function blobReader(
  blob: Blob,
  spare: ArrayBuffer[],
): { read: () => Promise<ReadableStreamReadResult<Uint8Array>>; cancel: () => Promise<void> } {
  const stream = blob.stream();
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = stream.getReader({ mode: 'byob' });
  } catch {
    // Not a byte stream in this browser.
  }
  if (!byob) {
    const reader = stream.getReader();
    return { read: () => reader.read(), cancel: () => reader.cancel() };
  }
  const reader = byob;
  return {
    read: () =>
      reader.read(new Uint8Array(spare.pop() ?? new ArrayBuffer(BLOB_READ_BYTES))) as Promise<ReadableStreamReadResult<Uint8Array>>,
    cancel: () => reader.cancel(),
  };
}

/** RFC 6266: an ASCII fallback name plus the exact name in RFC 5987 encoding. */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
