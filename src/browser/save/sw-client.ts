// The page's side of streamed downloads: registers the service worker (sw.ts) for a narrow scope
// (only download URLs pass through it, never the app's own requests), hands it the MessagePort the
// pull worker writes to, then starts the download by navigating a hidden frame to the URL the
// service worker answers. Pings keep the service worker alive while a download runs (browsers stop
// idle service workers; messages from a page count as activity).
import { SAVE_SCOPE, type FromSaveWorker, type SaveRegistration } from './types.ts';

const READY_TIMEOUT_MS = 10_000;
const KEEPALIVE_MS = 10_000;

let registering: Promise<ServiceWorkerRegistration | undefined> | undefined;

function base(): URL {
  return new URL(import.meta.env.BASE_URL || '/', location.href);
}

/** Register once (at page load); undefined where service workers are unavailable (no secure context, private modes, some embedded views). */
export function registerSaveWorker(): Promise<ServiceWorkerRegistration | undefined> {
  registering ??= (async () => {
    if (typeof navigator === 'undefined' || !('serviceWorker' in navigator) || !isSecureContext) return undefined;
    try {
      // Built as save-sw.js (vite.config.ts); the dev server serves the source as a module.
      const script = import.meta.env.DEV ? new URL('src/browser/save/sw.ts', base()) : new URL('save-sw.js', base());
      return await navigator.serviceWorker.register(script, {
        scope: new URL(SAVE_SCOPE, base()).pathname,
        ...(import.meta.env.DEV ? { type: 'module' as const } : {}),
      });
    } catch {
      return undefined;
    }
  })();
  return registering;
}

function activeWorker(reg: ServiceWorkerRegistration): Promise<ServiceWorker> {
  if (reg.active) return Promise.resolve(reg.active);
  return new Promise((resolve, reject) => {
    const sw = reg.installing ?? reg.waiting;
    const timer = setTimeout(() => reject(new Error('the service worker did not activate')), READY_TIMEOUT_MS);
    sw?.addEventListener('statechange', () => {
      if (reg.active) {
        clearTimeout(timer);
        resolve(reg.active);
      }
    });
    if (!sw) {
      clearTimeout(timer);
      reject(new Error('no service worker is installing'));
    }
  });
}

/**
 * Serve the archive the pull worker writes to `port` as a download named `fileName` (Content-Length
 * `size` when known). Returns a function to call when the pull has ended. If the download cannot
 * start, the pull worker is told on the port and fails with that message.
 */
export async function startStreamDownload(port: MessagePort, fileName: string, size: number | undefined): Promise<() => void> {
  try {
    const reg = await registerSaveWorker();
    if (!reg) throw new Error('service workers are not available in this browser');
    const sw = await activeWorker(reg);
    const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
    const container = navigator.serviceWorker;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the service worker did not answer')), READY_TIMEOUT_MS);
      const on = (e: MessageEvent) => {
        const data = e.data as { type?: string; id?: string } | null;
        if (data?.type !== 'longshore-save-ready' || data.id !== id) return;
        clearTimeout(timer);
        container.removeEventListener('message', on);
        resolve();
      };
      container.addEventListener('message', on);
      container.startMessages();
    });
    const registration: SaveRegistration = { type: 'longshore-save', id, fileName, ...(size !== undefined ? { size } : {}), port };
    sw.postMessage(registration, [port]);
    await ready;
    const frame = document.createElement('iframe');
    frame.hidden = true;
    frame.title = `Download of ${fileName}`;
    frame.src = new URL(`${SAVE_SCOPE}${encodeURIComponent(id)}/${encodeURIComponent(fileName)}`, base()).href;
    document.body.append(frame);
    const keepAlive = setInterval(() => sw.postMessage({ type: 'longshore-keepalive' }), KEEPALIVE_MS);
    return () => {
      clearInterval(keepAlive);
      // The download belongs to the browser now; the frame only started it.
      frame.remove();
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    try {
      port.postMessage({ t: 'fail', message } satisfies FromSaveWorker);
    } catch {
      // transferred already: the pull worker's start timeout reports it
    }
    return () => undefined;
  }
}
