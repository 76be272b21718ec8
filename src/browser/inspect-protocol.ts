// Messages between the page and the inspect worker. Both sides import these types from here, so
// the bridge and the worker cannot drift apart.
import type { ErrorJSON } from '../core/errors.ts';
import type { ArchiveFormat } from '../core/archive/index.ts';
import type {
  DirTotals,
  InspectTarget,
  LayerChanges,
  LayerTotals,
  ListingIssue,
  ListingLimits,
  ListingStatus,
  ViewQuery,
  ViewRow,
} from '../core/listing/index.ts';

/** What to inspect: a pulled image whose layer blobs are in IndexedDB, or a local archive file. */
export type InspectSource = { kind: 'stored'; target: InspectTarget } | { kind: 'archive'; file: File; image?: number };

/** A layer's index (bottom = 0) or the merged filesystem. */
export type ViewId = number | 'merged';

export interface ArchiveSummary {
  fileName: string;
  format: ArchiveFormat;
  formatLabel: string;
  /** Names of the images in the archive; `image` is the one opened. */
  images: string[];
  image: number;
}

export interface OpenedInspection {
  session: number;
  target: InspectTarget;
  archive?: ArchiveSummary;
}

export interface LayerStatus {
  index: number;
  state: 'waiting' | ListingStatus;
  entries: number;
  /** Decompressed bytes read. */
  bytes: number;
  compression?: string;
  totals: LayerTotals;
  /** Against the layers below; known once every layer is listed. */
  changes?: LayerChanges;
  issues: ListingIssue[];
  issueCount: number;
  error?: ErrorJSON;
}

export interface MergedStatus {
  /** 'partial': some layer could not be read whole, so the merge is incomplete. */
  state: 'waiting' | 'ready' | 'partial';
  entries: number;
  totals?: DirTotals;
  issues: ListingIssue[];
}

export interface SessionStatus {
  session: number;
  layers: LayerStatus[];
  merged: MergedStatus;
}

export interface FileResult {
  blob: Blob;
  fileName: string;
  size: number;
}

export interface ExportProgress {
  entries: number;
  bytes: number;
  totalEntries: number;
  totalBytes: number;
}

export type ToInspectWorker =
  | { type: 'open'; id: number; source: InspectSource; limits?: Partial<ListingLimits> }
  | { type: 'query'; id: number; session: number; view: ViewId; query: ViewQuery; start: number; count: number }
  | { type: 'download'; id: number; session: number; layer: number; ordinal: number }
  | { type: 'export'; id: number; session: number }
  | { type: 'close'; session: number }
  | { type: 'cancel'; id: number };

export type FromInspectWorker =
  | { type: 'opened'; id: number; opened: OpenedInspection }
  | { type: 'status'; status: SessionStatus }
  | { type: 'rows'; id: number; total: number; rows: ViewRow[] }
  | { type: 'file'; id: number; file: FileResult }
  | { type: 'progress'; id: number; progress: ExportProgress }
  | { type: 'error'; id: number; error: ErrorJSON };
