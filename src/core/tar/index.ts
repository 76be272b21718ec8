// The tar module: headers (ustar + PAX), a plan-based writer and a streaming reader.
export {
  BLOCK_SIZE,
  END_OF_ARCHIVE_SIZE,
  TarEntryType,
  decodeHeader,
  encodeHeader,
  encodePax,
  endOfArchive,
  paddingFor,
  parsePax,
  type TarEntryHeader,
} from './header.ts';
export {
  contentRef,
  isContentRef,
  planTar,
  tarBytes,
  type ArchivePart,
  type ContentRef,
  type TarPlan,
  type TarPlanEntry,
} from './writer.ts';
export { DEFAULT_MAX_PAX_BYTES, readTar, type ReadTarOptions, type TarEntry } from './reader.ts';
