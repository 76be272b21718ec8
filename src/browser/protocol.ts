// Messages between the page and the pull worker. Both sides import these types from here, so
// the bridge and the worker cannot drift apart.
import type { ErrorJSON } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { InspectTarget } from '../core/listing/target.ts';
import type { RegistryNotice } from '../core/registry/rate-limit.ts';
import type { SavedInfo, SaveTarget } from './save/types.ts';
import type { CacheNote } from '../core/image/cached-source.ts';

export interface WorkerConfig {
  /** Origin (and path prefix) of the longshore proxy; requests go to `<proxyBase>/proxy/<host>/…`. */
  proxyBase: string;
  concurrency?: number;
  /** Parallel ranges for big blobs, over DEFAULT_PARALLEL in core/pull.ts (connections 1: off). */
  parallel?: { connections?: number; threshold?: number; pieceBytes?: number; aheadPieces?: number };
  /** A picked file follows blobs from this size on while they download (default FOLLOW_FROM_BYTES in pull-job.ts). */
  followFrom?: number;
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
  /** Where the archive goes (default: a Blob offered when the pull ends). */
  save?: SaveTarget;
  /** Keep the pulled blobs in this browser's cache (default true); off, blobs only pass through it. */
  keepCopy?: boolean;
  /** The unfinished-pulls journal entry to write (a Resume passes the old one's id). */
  journalId?: string;
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
  /** The archive, for the Blob destination (offered with a Download button). */
  blob?: Blob;
  /** Where it was saved (every destination; for `blob`, not yet: the user downloads it). */
  saved: SavedInfo;
  fileName: string;
  size: number;
  format: string;
  reference: string;
  digest: string;
  platform: string | undefined;
  /** What the inspector needs to browse the (first) image: its layers are in IndexedDB already (absent when no copy was kept). */
  inspect?: InspectTarget;
  /** Where the cache answered instead of the registry (offline, or a digest already cached). */
  cache?: CacheNote[];
}

export type Phase = 'resolving' | 'downloading' | 'assembling';

/** How far the archive has been written to its destination. */
export interface SaveProgress {
  written: number;
  /** Planned size; undefined while not known (legacy before every layer is decompressed). */
  total: number | undefined;
}

export type ToWorker =
  | { type: 'init'; config: WorkerConfig }
  | { type: 'resolve'; id: number; reference: string; credentials?: Record<string, Credentials> }
  | { type: 'pull'; id: number; request: PullRequest }
  | { type: 'cancel'; id: number };

export type FromWorker =
  /** Sent once the worker's module has run: until then the bridge's start-up bound applies. */
  | { type: 'ready' }
  /** What request `id` waits for now ("the manifest of x from host"), for the stall watchdog's message. */
  | { type: 'activity'; id: number; detail: string; /** A tighter bound for this wait than the watchdog's default. */ boundMs?: number }
  | { type: 'phase'; id: number; phase: Phase }
  | { type: 'progress'; id: number; events: PullEvent[] }
  | { type: 'save-progress'; id: number; progress: SaveProgress }
  /** Serve the archive as a streamed download from `port` (the page hands it to the service worker). */
  | { type: 'save-stream'; id: number; port: MessagePort; fileName: string; size: number | undefined }
  | { type: 'resolved'; id: number; summary: ResolveSummary }
  /** A registry's rate limit, or a wait before a retry it asked for (RateLimit-*, Retry-After). */
  | { type: 'notice'; id: number; notice: RegistryNotice }
  | { type: 'done'; id: number; outcome: PullOutcome }
  | { type: 'error'; id: number; error: ErrorJSON }
  /** Start a layer worker, hand it `data` and keep `control` (layer-host.ts: the page starts every worker). */
  | { type: 'spawn-layer'; control: MessagePort; data: MessagePort };
