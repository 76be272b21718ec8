// The pull worker's end of a layer worker the page started for it (layer-host.ts explains why
// the page starts them): the part of a Worker that LayerPool and WorkerRpc use, over a MessagePort.

/** Envelopes on the port: the layer worker's own messages, and what only the page can see or do. */
export type FromHost =
  { relay: 'message'; data: unknown } | { relay: 'error'; message: string; filename: string; lineno: number } | { relay: 'messageerror' };
export type ToHost = { relay: 'message'; data: unknown } | { relay: 'terminate' };

/**
 * The pull worker's half: what LayerPool and WorkerRpc use of a Worker, over a port whose other
 * end the page connects to a real layer worker (`request` posts the 'spawn-layer' message).
 */
export class PortWorker {
  onmessage: ((e: MessageEvent) => void) | null = null;
  onerror: ((e: Pick<ErrorEvent, 'message' | 'filename' | 'lineno' | 'preventDefault'>) => void) | null = null;
  onmessageerror: ((e: MessageEvent) => void) | null = null;
  readonly #port: MessagePort;

  constructor(request: (port: MessagePort) => void) {
    const channel = new MessageChannel();
    this.#port = channel.port1;
    this.#port.onmessage = (e: MessageEvent<FromHost>) => {
      const m = e.data;
      if (m.relay === 'message') this.onmessage?.(new MessageEvent('message', { data: m.data }));
      else if (m.relay === 'error')
        this.onerror?.({ message: m.message, filename: m.filename, lineno: m.lineno, preventDefault: () => undefined });
      else this.onmessageerror?.(new MessageEvent('messageerror'));
    };
    this.#port.onmessageerror = (e) => this.onmessageerror?.(e);
    request(channel.port2);
  }

  postMessage(data: unknown, transfer: Transferable[] = []): void {
    this.#port.postMessage({ relay: 'message', data } satisfies ToHost, transfer);
  }

  terminate(): void {
    this.#port.postMessage({ relay: 'terminate' } satisfies ToHost);
    this.#port.close();
  }
}
