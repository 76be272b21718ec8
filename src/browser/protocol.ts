// Messages between the page and the pull worker. Both sides import these types from here, so
// the bridge and the worker cannot drift apart.
import type { ErrorJSON } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { InspectTarget } from '../core/listing/target.ts';
import type { RegistryNotice } from '../core/registry/rate-limit.ts';
import type { CacheNote } from '../core/image/cached-source.ts';

export interface WorkerConfig {
  /** Origin (and path prefix) of the longshore proxy; requests go to `<proxyBase>/proxy/<host>/…`. */
  proxyBase: string;
  concurrency?: number;
}

export interface PullRequest {
  /** One name, or several for one archive holding every image (formats that allow it). */
  references: string[];
  /** "linux/arm64/v8"; default linux/amd64. */
  platform?: string;
  format: string;
  /** Every platform of an index, for formats that can hold one (oci). */
  allPlatforms?: boolean;
  /** Credentials by registry host, kept in memory only. */
  credentials?: Record<string, Credentials>;
}

export interface ResolveSummary {
  kind: 'image' | 'index';
  reference: string;
  digest: string;
  mediaType: string;
  /** Runnable platforms of an index (attestations left out); for an image, its own platform. */
  platforms: { label: string; digest: string }[];
}

export interface PullOutcome {
  blob: Blob;
  fileName: string;
  size: number;
  format: string;
  reference: string;
  digest: string;
  platform: string | undefined;
  /** What the inspector needs to browse the (first) image: its layers are in IndexedDB already. */
  inspect?: InspectTarget;
  /** Where the cache answered instead of the registry (offline, or a digest already cached). */
  cache?: CacheNote[];
}

export type Phase = 'resolving' | 'downloading' | 'assembling';

export type ToWorker =
  | { type: 'init'; config: WorkerConfig }
  | { type: 'resolve'; id: number; reference: string; credentials?: Record<string, Credentials> }
  | { type: 'pull'; id: number; request: PullRequest }
  | { type: 'cancel'; id: number };

export type FromWorker =
  | { type: 'phase'; id: number; phase: Phase }
  | { type: 'progress'; id: number; events: PullEvent[] }
  | { type: 'resolved'; id: number; summary: ResolveSummary }
  /** A registry's rate limit, or a wait before a retry it asked for (RateLimit-*, Retry-After). */
  | { type: 'notice'; id: number; notice: RegistryNotice }
  | { type: 'done'; id: number; outcome: PullOutcome }
  | { type: 'error'; id: number; error: ErrorJSON };
