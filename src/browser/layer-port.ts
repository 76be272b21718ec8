// The pull worker's end of a layer worker the page started for it (layer-host.ts explains why
// the page starts them): the part of a Worker that LayerPool and WorkerRpc use, over MessagePorts.

/** On the control port: what only the page can see of the worker, and what only it can do. */
export type FromHost = { kind: 'error'; message: string; filename: string; lineno: number } | { kind: 'messageerror' };
export type ToHost = { kind: 'terminate' };

/**
 * The pull worker's half: what LayerPool and WorkerRpc use of a Worker. Messages go straight to
 * the layer worker over a data port the page hands it; `request` posts the 'spawn-layer' message
 * with that port and the control port the page keeps.
 */
export class PortWorker {
  onmessage: ((e: MessageEvent) => void) | null = null;
  onerror: ((e: Pick<ErrorEvent, 'message' | 'filename' | 'lineno' | 'preventDefault'>) => void) | null = null;
  onmessageerror: ((e: MessageEvent) => void) | null = null;
  readonly #control: MessagePort;
  readonly #data: MessagePort;

  constructor(request: (control: MessagePort, data: MessagePort) => void) {
    const control = new MessageChannel();
    const data = new MessageChannel();
    this.#control = control.port1;
    this.#data = data.port1;
    this.#data.onmessage = (e) => this.onmessage?.(e);
    this.#data.onmessageerror = (e) => this.onmessageerror?.(e);
    this.#control.onmessage = (e: MessageEvent<FromHost>) => {
      const m = e.data;
      if (m.kind === 'error')
        this.onerror?.({ message: m.message, filename: m.filename, lineno: m.lineno, preventDefault: () => undefined });
      else this.onmessageerror?.(new MessageEvent('messageerror'));
    };
    request(control.port2, data.port2);
  }

  postMessage(data: unknown, transfer: Transferable[] = []): void {
    this.#data.postMessage(data, transfer);
  }

  terminate(): void {
    this.#control.postMessage({ kind: 'terminate' } satisfies ToHost);
    this.#control.close();
    this.#data.close();
  }
}
