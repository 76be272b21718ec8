// Local image archives (docker save, OCI layout tar, crane tarball), read in place.
export {
  ARCHIVE_FORMAT_LABEL,
  openArchive,
  type ArchiveFormat,
  type ArchiveImage,
  type ArchiveLayer,
  type OpenedArchive,
} from './open-archive.ts';
export { blobRandomAccess, bytesRandomAccess, type RandomAccess } from './random-access.ts';
export { indexTar, type IndexedEntry, type IndexTarOptions } from './tar-index.ts';
