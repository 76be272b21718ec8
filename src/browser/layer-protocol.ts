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
  | { type: 'cancel'; id: number };

export type FromLayerWorker =
  { type: 'bytes'; id: number; n: number } | { type: 'done'; id: number } | { type: 'error'; id: number; error: ErrorJSON };
