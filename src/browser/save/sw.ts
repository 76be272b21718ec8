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

/** The body: chunks from the port, credit back as the browser reads them. */
function relay(port: MessagePort): ReadableStream<Uint8Array> {
  const queue: (Uint8Array | Blob)[] = [];
  let reading: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let ended = false;
  let failure: string | undefined;
  let wake: (() => void) | undefined;
  const post = (m: FromSaveWorker) => port.postMessage(m);
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
              controller.enqueue(value);
              post({ t: 'credit', n: value.byteLength });
              return;
            }
            reading = undefined;
            continue;
          }
          const next = queue.shift();
          if (next instanceof Blob) {
            reading = next.stream().getReader();
            continue;
          }
          if (next) {
            controller.enqueue(next);
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

/** RFC 6266: an ASCII fallback name plus the exact name in RFC 5987 encoding. */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
