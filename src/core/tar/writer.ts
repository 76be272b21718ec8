// Tar writing as a plan: header bytes interleaved with references to content held elsewhere (e.g.
// stored layer blobs), so an archive of any size is described exactly without copying its content.
import { END_OF_ARCHIVE_SIZE, TarEntryType, encodeHeader, paddingFor, tarError, type TarEntryHeader } from './header.ts';

/** Content resolved later by whoever assembles the archive; `key` is e.g. a blob digest. */
export type ContentRef = { readonly kind: 'ref'; readonly key: string; readonly size: number };
export type ArchivePart = Uint8Array | ContentRef;

export interface TarPlanEntry {
  header: TarEntryHeader;
  content?: Uint8Array | ContentRef;
}

export interface TarPlan {
  /** In order: Uint8Arrays (headers, inline content, padding, end marker; adjacent ones merged) and refs. */
  parts: ArchivePart[];
  /** Exact archive size in bytes: the sum of every part's length or ref size. */
  size: number;
}

export function contentRef(key: string, size: number): ContentRef {
  return { kind: 'ref', key, size };
}

export function isContentRef(value: unknown): value is ContentRef {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'ref';
}

/**
 * Plan a tar archive (PAX where needed, else ustar), ending with the two-block end marker.
 * Each header's size must equal its content's size; only regular files may have content.
 */
export function planTar(entries: readonly TarPlanEntry[]): TarPlan {
  if (!Array.isArray(entries)) throw tarError('planTar expects an array of entries.');
  const parts: ArchivePart[] = [];
  // Byte runs waiting to be merged into one Uint8Array; a number is that many zero bytes.
  let pending: (Uint8Array | number)[] = [];
  let pendingSize = 0;
  let size = 0;

  const push = (bytes: Uint8Array | number): void => {
    const length = typeof bytes === 'number' ? bytes : bytes.length;
    if (length === 0) return;
    pending.push(bytes);
    pendingSize += length;
    size += length;
  };
  const flush = (): void => {
    if (pendingSize === 0) return;
    const merged = new Uint8Array(pendingSize);
    let offset = 0;
    for (const run of pending) {
      if (typeof run === 'number') offset += run;
      else {
        merged.set(run, offset);
        offset += run.length;
      }
    }
    parts.push(merged);
    pending = [];
    pendingSize = 0;
  };

  entries.forEach((entry, index) => {
    const contentSize = checkEntry(entry, index);
    push(encodeHeader(entry.header));
    const content = entry.content;
    if (isContentRef(content)) {
      if (content.size > 0) {
        flush();
        parts.push(content);
        size += content.size;
      }
    } else if (content !== undefined) {
      push(content);
    }
    push(paddingFor(contentSize));
  });
  push(END_OF_ARCHIVE_SIZE);
  flush();
  return { parts, size };
}

/** A whole small archive in memory; content must be inline bytes. */
export function tarBytes(entries: readonly { header: TarEntryHeader; content?: Uint8Array }[]): Uint8Array {
  entries.forEach((entry, index) => {
    if (isContentRef(entry?.content)) {
      throw tarError(`tarBytes: entry ${index} ("${entry.header?.path}") has a content reference; use planTar.`, { index });
    }
  });
  const { parts } = planTar(entries);
  // planTar always ends with the end marker, and without refs everything merges into one part.
  return parts[0] as Uint8Array;
}

/** Check an entry's content against its header; returns the content size. */
function checkEntry(entry: TarPlanEntry, index: number): number {
  if (typeof entry !== 'object' || entry === null || typeof entry.header !== 'object' || entry.header === null) {
    throw tarError(`Tar plan entry ${index} needs a header.`, { index });
  }
  const { header, content } = entry;
  const path = header.path;
  let contentSize: number;
  if (content === undefined) contentSize = 0;
  else if (content instanceof Uint8Array) contentSize = content.length;
  else if (isContentRef(content)) {
    if (typeof content.key !== 'string' || content.key === '' || !Number.isSafeInteger(content.size) || content.size < 0) {
      throw tarError(`Tar entry "${path}" has an invalid content reference.`, { index, path });
    }
    contentSize = content.size;
  } else {
    throw tarError(`Tar entry "${path}" content must be a Uint8Array or a content reference.`, { index, path });
  }
  if (header.type !== TarEntryType.File && contentSize !== 0) {
    throw tarError(`Tar entry "${path}" of type ${String(header.type)} cannot have content (${contentSize} bytes given).`, { index, path });
  }
  if (header.size !== contentSize) {
    throw tarError(`Tar entry "${path}": header size ${header.size} does not match content size ${contentSize}.`, {
      index,
      path,
      headerSize: header.size,
      contentSize,
    });
  }
  return contentSize;
}
