// Progress events of a pull. Emitted per chunk by the core; whoever forwards them across a
// boundary (the worker bridge) throttles.

/** `skipped`: a foreign layer whose source is not allowed; the format keeps its descriptor only. */
export type LayerState = 'waiting' | 'downloading' | 'cached' | 'done' | 'failed' | 'skipped';

export interface LayerPlan {
  index: number;
  digest: string;
  mediaType: string;
  size: number;
  cached: boolean;
}

export type PullEvent =
  | { type: 'resolving'; reference: string }
  | { type: 'resolved'; reference: string; digest: string; mediaType: string; platform?: string }
  | { type: 'plan'; layers: LayerPlan[]; totalBytes: number }
  | { type: 'layer'; index: number; digest: string; state: LayerState; done: number; total: number }
  /** Something the user should know although the pull goes on (a foreign layer left out). */
  | { type: 'warning'; code: string; message: string; hint?: string; digest?: string };
