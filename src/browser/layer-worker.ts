// A layer worker: fetches one layer at a time (or a few), verifies it while it streams, and keeps
// it in IndexedDB, exactly as the core's storeLayer does in-process. Several of these let a pull
// hash and decompress on every core instead of one.
/// <reference lib="webworker" />
import { AbortedError, LongshoreError } from '../core/errors.ts';
import { proxyTransport } from '../core/http/transport.ts';
import { DEFAULT_PARALLEL, storedBlobOpener, storeLayer } from '../core/pull.ts';
import { parseReference } from '../core/reference.ts';
import { RegistryClient } from '../core/registry/client.ts';
import { IdbBlobStore } from './idb-store.ts';
import type { FromLayerWorker, ToLayerWorker, ToLayerWorkerFromPage } from './layer-protocol.ts';
import { LiveJob } from './layer-tail.ts';
import type { BlobStore } from '../core/store/blob-store.ts';

declare const self: DedicatedWorkerGlobalScope;

const BYTES_INTERVAL_MS = 50;
const store = new IdbBlobStore();
const jobs = new Map<number, AbortController>();
/** Running jobs, for the writer that follows one (layer-tail.ts). */
const live = new Map<number, LiveJob>();
/** One client per configuration and credentials, so its token cache is reused across layers. */
const clients = new Map<string, RegistryClient>();
/** The pull worker, reached directly over the port the page hands over first (layer-host.ts). */
let pullWorker: MessagePort | undefined;

function post(message: FromLayerWorker): void {
  pullWorker?.postMessage(message);
}

function clientFor(msg: Extract<ToLayerWorker, { type: 'run' }>): RegistryClient {
  const key = JSON.stringify([msg.config.proxyBase, msg.credentials ?? {}]);
  let client = clients.get(key);
  if (!client) {
    const credentials = msg.credentials;
    client = new RegistryClient({
      transport: proxyTransport(self.fetch.bind(self), msg.config.proxyBase),
      credentials: (host) => credentials?.[host],
    });
    clients.set(key, client);
  }
  return client;
}

self.onmessage = (e: MessageEvent<ToLayerWorkerFromPage>) => {
  if (e.data.type !== 'connect' || pullWorker) return;
  pullWorker = e.data.port;
  pullWorker.onmessage = (m: MessageEvent<ToLayerWorker>) => void receive(m.data);
};

async function receive(msg: ToLayerWorker): Promise<void> {
  if (msg.type === 'cancel') {
    jobs.get(msg.id)?.abort();
    return;
  }
  if (msg.type === 'tail') {
    const job = live.get(msg.id);
    if (job) job.follow(msg.port);
    else {
      // Ended already (its answer is on the way): the writer copies the stored blob.
      msg.port.postMessage({ t: 'verified', sent: 0 });
      msg.port.close();
    }
    return;
  }
  const ac = new AbortController();
  jobs.set(msg.id, ac);
  const liveJob = new LiveJob();
  live.set(msg.id, liveJob);
  // The store as this job sees it: the partial it opens is the one a tail follows.
  const jobStore: BlobStore = {
    has: (k) => store.has(k),
    size: (k) => store.size(k),
    put: (k, s, sig) => store.put(k, s, sig),
    open: (k) => store.open(k),
    delete: (k) => store.delete(k),
    openPartial: async (k, size, sig) => {
      const partial = await store.openPartial(k, size, sig);
      liveJob.attach(partial);
      return partial;
    },
    createSpill: async (k) => liveJob.watchSpill(await store.createSpill(k)),
  };
  let pending = 0;
  /** Bytes moved without new ones (a spilled range read back and hashed): still progress (n: 0). */
  let moved = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    if (pending || moved) post({ type: 'bytes', id: msg.id, n: pending });
    pending = 0;
    moved = false;
  };
  try {
    const client = clientFor(msg);
    if (msg.auth) client.adoptAuth(msg.auth);
    const ref = parseReference(msg.job.reference);
    const from = msg.job.fromStore
      ? { open: storedBlobOpener(store, msg.job.descriptor.digest, msg.job.label) }
      : client.blobSender(ref, msg.job.descriptor, msg.job.label);
    await storeLayer(
      from,
      msg.job,
      { store: jobStore, signal: ac.signal, parallel: { ...DEFAULT_PARALLEL, ...msg.config.parallel } },
      (n) => {
        pending += n;
        moved = true;
        timer ??= setTimeout(flush, BYTES_INTERVAL_MS);
      },
    );
    if (timer !== undefined) clearTimeout(timer);
    flush();
    liveJob.end(true);
    post({ type: 'done', id: msg.id });
  } catch (err) {
    if (timer !== undefined) clearTimeout(timer);
    flush();
    const error = ac.signal.aborted ? new AbortedError() : LongshoreError.from(err);
    liveJob.end(false, error.message);
    post({ type: 'error', id: msg.id, error: error.toJSON() });
  } finally {
    jobs.delete(msg.id);
    live.delete(msg.id);
  }
}
