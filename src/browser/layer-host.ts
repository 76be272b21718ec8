// Layer workers are started by the page, never by the pull worker: in Firefox ESR under WebDriver
// BiDi, `new Worker()` called from a worker sometimes never returns (README, "Browser support"),
// which froze the pull worker with its IndexedDB transactions still open, so every later write to
// the blob store waited forever. The pull worker asks for one with a MessagePort ('spawn-layer');
// the page starts it and relays its messages both ways. Layer messages are small (jobs, byte
// counts, results: the bytes themselves go to the store), so the hop through the page costs little.
import type { FromHost, ToHost } from './layer-port.ts';

/** The page's half: starts a layer worker for `port` and relays; returns a function that stops it. */
export function hostLayerWorker(
  port: MessagePort,
  spawn: () => Worker = () => new Worker(new URL('./layer-worker.ts', import.meta.url), { type: 'module', name: 'longshore-layer' }),
): () => void {
  const worker = spawn();
  const stop = () => {
    worker.terminate();
    port.close();
  };
  const send = (m: FromHost) => port.postMessage(m);
  worker.onmessage = (e: MessageEvent) => send({ relay: 'message', data: e.data });
  worker.onmessageerror = () => send({ relay: 'messageerror' });
  worker.onerror = (e) => {
    // Reported to the pull worker, whose pool fails the layer's job (and the pull retries it).
    e.preventDefault();
    send({ relay: 'error', message: e.message, filename: e.filename, lineno: e.lineno });
  };
  port.onmessage = (e: MessageEvent<ToHost>) => {
    if (e.data.relay === 'terminate') stop();
    // Ports in a message (a tail's, layer-tail.ts) go on to the worker: they are transferred.
    else worker.postMessage(e.data.data, [...e.ports]);
  };
  return stop;
}
