// Layer workers are started by the page, never by the pull worker: in Firefox ESR under WebDriver
// BiDi, `new Worker()` called from a worker sometimes never returns (README, "Browser support"),
// which froze the pull worker with its IndexedDB transactions still open, so every later write to
// the blob store waited forever. The pull worker asks for one with two MessagePorts
// ('spawn-layer'): the page starts the worker and hands it `data`, over which the two workers then
// talk directly (jobs, byte counts, results, tails' ports), and keeps `control` for what only the
// page sees or does: the worker's crash, an unreadable message, terminate().
import type { FromHost, ToHost } from './layer-port.ts';
import type { ToLayerWorkerFromPage } from './layer-protocol.ts';

/** The page's half: starts a layer worker connected to `data`; returns a function that stops it. */
export function hostLayerWorker(
  control: MessagePort,
  data: MessagePort,
  spawn: () => Worker = () => new Worker(new URL('./layer-worker.ts', import.meta.url), { type: 'module', name: 'longshore-layer' }),
): () => void {
  const worker = spawn();
  const stop = () => {
    worker.terminate();
    control.close();
  };
  const send = (m: FromHost) => control.postMessage(m);
  worker.postMessage({ type: 'connect', port: data } satisfies ToLayerWorkerFromPage, [data]);
  worker.onmessageerror = () => send({ kind: 'messageerror' });
  worker.onerror = (e) => {
    // Reported to the pull worker, whose pool fails the layer's job (and the pull retries it).
    e.preventDefault();
    send({ kind: 'error', message: e.message, filename: e.filename, lineno: e.lineno });
  };
  control.onmessage = (e: MessageEvent<ToHost>) => {
    if (e.data.kind === 'terminate') stop();
  };
  return stop;
}
