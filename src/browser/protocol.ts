// Messages between the page and the pull worker. Both sides import these types from here, so
// the bridge and the worker cannot drift apart.
import type { ErrorJSON } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import type { InspectTarget } from '../core/listing/target.ts';

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
}

export type Phase = 'resolving' | 'downloading' | 'assembling';

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
  | { type: 'resolved'; id: number; summary: ResolveSummary }
  | { type: 'done'; id: number; outcome: PullOutcome }
  | { type: 'error'; id: number; error: ErrorJSON };
