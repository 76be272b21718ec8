// The metadata headers between two tar entries (PAX 'x' and 'g', GNU 'L' and 'K'), gathered for
// the next entry with their totals bounded, for the streaming reader and the archive index alike.
// A header each under the limit is not enough: a crafted layer can chain thousands of them, or
// grow the global records without end and have them copied into every entry.
import { applyPax, tarError, type TarEntryHeader } from './header.ts';

/**
 * Global records that change an entry (pax spec, "pax Header Block"); others are not kept. Go's
 * archive/tar, which Docker and containerd read layers with, applies no global record at all.
 */
const GLOBAL_FIELDS: ReadonlySet<string> = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime']);

export type MetadataKind = 'PAX extended header' | 'PAX global header' | 'GNU long name' | 'GNU long link name';

export class ExtendedHeaders {
  readonly #maxBytes: number;
  /** Data bytes of the metadata headers read since the last entry. */
  #pendingBytes = 0;
  #local: Record<string, string> = Object.create(null) as Record<string, string>;
  #global: Record<string, string> = Object.create(null) as Record<string, string>;
  #longName: string | undefined;
  #longLink: string | undefined;
  #pending = false;

  /** `maxBytes` bounds each header and all of them before one entry together. */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Whether metadata was read that no entry has taken yet. */
  get pending(): boolean {
    return this.#pending;
  }

  /** Call before reading a metadata header's `size` data bytes: refuses one, or a run, too large. */
  admit(size: number, offset: number, what: MetadataKind): void {
    if (size > this.#maxBytes) {
      throw tarError(
        `Tar ${what} at byte offset ${offset} is ${size} bytes, over the limit of ${this.#maxBytes} bytes (maxPaxBytes).`,
        { offset, size, limit: this.#maxBytes },
        'The archive has an unusually large extended header; raise maxPaxBytes if it is trusted.',
      );
    }
    this.#pendingBytes += size;
    if (this.#pendingBytes > this.#maxBytes) {
      throw tarError(
        `Tar metadata headers in a row, up to the ${what} at byte offset ${offset}, total ${this.#pendingBytes} bytes, over the limit of ${this.#maxBytes} bytes (maxPaxBytes).`,
        { offset, size: this.#pendingBytes, limit: this.#maxBytes },
        'The archive chains extended headers far beyond what any tar writer produces; it is probably crafted.',
      );
    }
  }

  local(records: Record<string, string>): void {
    Object.assign(this.#local, records);
    this.#pending = true;
  }

  /** An empty value removes the key (pax spec, "pax Extended Header"). */
  global(records: Record<string, string>, offset: number): void {
    for (const [key, value] of Object.entries(records)) {
      if (key.startsWith('GNU.sparse.'))
        throw tarError(`Tar PAX global header at byte offset ${offset} declares sparse files, which are not supported.`, { offset });
      if (!GLOBAL_FIELDS.has(key)) continue;
      if (value === '') delete this.#global[key];
      else this.#global[key] = value;
    }
  }

  longName(name: string): void {
    this.#longName = name;
    this.#pending = true;
  }

  longLink(name: string): void {
    this.#longLink = name;
    this.#pending = true;
  }

  /** Apply what was gathered to the entry's header (GNU long names win over PAX, as in Go) and start afresh. */
  applyTo(header: TarEntryHeader, offset: number): void {
    let records = this.#local;
    for (const key in this.#global) {
      if (!(key in records)) {
        records = { ...this.#global, ...this.#local };
        break;
      }
    }
    if (Object.keys(records).length > 0) applyPax(header, records, offset);
    if (this.#longName !== undefined) header.path = this.#longName;
    if (this.#longLink !== undefined) header.linkname = this.#longLink;
    this.#local = Object.create(null) as Record<string, string>;
    this.#longName = undefined;
    this.#longLink = undefined;
    this.#pending = false;
    this.#pendingBytes = 0;
  }
}
