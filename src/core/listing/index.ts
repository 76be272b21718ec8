// Seeing inside images: layer listings, the merged filesystem, its export as one tar, and queries
// for a windowed UI.
export {
  EntryKind,
  OPAQUE_MARKER,
  WHITEOUT_PREFIX,
  cleanPath,
  countEntry,
  emptyTotals,
  entryFromHeader,
  explainWhiteout,
  hasControlCharacters,
  modeString,
  visibleName,
  type IssueCode,
  type LayerTotals,
  type ListingEntry,
  type ListingIssue,
} from './entry.ts';
export {
  DEFAULT_LISTING_LIMITS,
  ListingLimitError,
  listLayer,
  newListing,
  type LayerListing,
  type ListLayerOptions,
  type ListingLimits,
  type ListingStatus,
} from './list-layer.ts';
export { mergeLayers, type EntrySource, type LayerChanges, type MergedEntry, type MergedFilesystem, type WhiteoutEffect } from './merge.ts';
export { exportStream, planExport, type ExportItem, type ExportOptions, type ExportPlan } from './export.ts';
export { openEntryBody } from './extract.ts';
export { compileFilter, type PathFilter } from './filter.ts';
export { ListingView, layerItems, type DirTotals, type SortKey, type ViewItem, type ViewQuery, type ViewRow } from './view.ts';
export { historySteps, inspectTargetOf, type HistoryStep, type InspectLayer, type InspectTarget } from './target.ts';
