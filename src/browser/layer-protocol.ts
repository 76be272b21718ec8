// Messages between the pull worker and its layer workers (layer-pool.ts ↔ layer-worker.ts).
import type { ErrorJSON } from '../core/errors.ts';
import type { LayerJob } from '../core/pull.ts';
import type { Credentials, SharedAuth } from '../core/registry/auth.ts';
import type { WorkerConfig } from './protocol.ts';

export type ToLayerWorker =
  | {
      type: 'run';
      id: number;
      job: LayerJob;
      config: WorkerConfig;
      credentials?: Record<string, Credentials>;
      /** Tokens the pull worker holds already (no 401 + token request per layer worker). */ auth?: SharedAuth[];
    }
  | { type: 'cancel'; id: number }
  /** Send the job's hashed bytes on `port` as they come (layer-tail.ts). */
  | { type: 'tail'; id: number; port: MessagePort };

export type FromLayerWorker =
  { type: 'bytes'; id: number; n: number } | { type: 'done'; id: number } | { type: 'error'; id: number; error: ErrorJSON };

/** The page's one message to a layer worker it started: the port to the pull worker (layer-host.ts). */
export type ToLayerWorkerFromPage = { type: 'connect'; port: MessagePort };
