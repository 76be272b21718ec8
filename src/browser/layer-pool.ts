// Spreads layers over a few layer workers (least busy first), so SHA-256, decompression and
// IndexedDB writes of different layers run on different cores. Retries, progress totals and
// cancellation stay with the pull (core/pull.ts); this only runs one layer job where asked.
import type { LayerJob } from '../core/pull.ts';
import type { Credentials, SharedAuth } from '../core/registry/auth.ts';
import type { FromLayerWorker, ToLayerWorker } from './layer-protocol.ts';
import type { WorkerConfig } from './protocol.ts';
import { WorkerRpc } from './worker-rpc.ts';
import { BlobTail } from './layer-tail.ts';

interface Hooks {
  onBytes?: (n: number) => void;
}

const cancel = (id: number): ToLayerWorker => ({ type: 'cancel', id });

export class LayerPool {
  readonly #members: { rpc: WorkerRpc<ToLayerWorker, Hooks>; busy: number }[];
  readonly #factory: () => Worker;
  /** The job fetching each blob now, by digest: what a writer follows (follow()). */
  readonly #running = new Map<string, { rpc: WorkerRpc<ToLayerWorker, Hooks>; id: number }>();

  /** `factory` gives a layer worker: the page's, over a port (layer-host.ts), never one started here. */
  constructor(size: number, factory: () => Worker) {
    this.#factory = factory;
    this.#members = Array.from({ length: Math.max(1, size) }, () => ({ rpc: this.#rpc(), busy: 0 }));
  }

  #rpc(): WorkerRpc<ToLayerWorker, Hooks> {
    const rpc = new WorkerRpc<ToLayerWorker, Hooks>(this.#factory(), 'layer');
    rpc.worker.onmessage = (e: MessageEvent<FromLayerWorker>) => {
      const msg = e.data;
      if (msg.type === 'bytes') rpc.hooks(msg.id)?.onBytes?.(msg.n);
      else if (msg.type === 'done') rpc.settle(msg.id, undefined);
      else rpc.fail(msg.id, msg.error);
    };
    return rpc;
  }

  get size(): number {
    return this.#members.length;
  }

  async run(
    job: LayerJob,
    config: WorkerConfig,
    credentials: Record<string, Credentials> | undefined,
    onBytes: (n: number) => void,
    signal: AbortSignal,
    auth?: SharedAuth[],
  ): Promise<void> {
    const member = this.#members.reduce((a, b) => (b.busy < a.busy ? b : a));
    // A layer worker that died failed its jobs (the pull retries them); its place gets a new one.
    if (member.rpc.dead) member.rpc = this.#rpc();
    member.busy++;
    const digest = job.descriptor.digest;
    let entry: { rpc: WorkerRpc<ToLayerWorker, Hooks>; id: number } | undefined;
    try {
      await member.rpc.start<void>(
        (id) => {
          entry = { rpc: member.rpc, id };
          this.#running.set(digest, entry);
          return { type: 'run', id, job, config, ...(credentials ? { credentials } : {}), ...(auth?.length ? { auth } : {}) };
        },
        cancel,
        signal,
        { onBytes },
      );
    } finally {
      member.busy--;
      if (entry && this.#running.get(digest) === entry) this.#running.delete(digest);
    }
  }

  /**
   * Follow the job fetching `digest` now (layer-tail.ts): its hashed bytes as they come. Undefined
   * when no job of this pool fetches it.
   */
  follow(digest: string, label: string, signal?: AbortSignal, pieces = false): BlobTail | undefined {
    const entry = this.#running.get(digest);
    if (!entry || entry.rpc.dead) return undefined;
    const channel = new MessageChannel();
    (entry.rpc.worker as unknown as { postMessage(m: unknown, t: Transferable[]): void }).postMessage(
      { type: 'tail', id: entry.id, port: channel.port2 } satisfies ToLayerWorker,
      [channel.port2],
    );
    return new BlobTail(channel.port1, label, signal, pieces);
  }

  terminate(): void {
    for (const m of this.#members) m.rpc.terminate();
  }
}

/** Workers for layers: one per core, at most `limit` (the page starts them, so nested Workers are not needed). */
export function layerPoolSize(limit: number): number {
  const cores = typeof navigator !== 'undefined' && navigator.hardwareConcurrency ? navigator.hardwareConcurrency : 2;
  return Math.max(1, Math.min(cores, limit));
}
