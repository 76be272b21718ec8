// Index an outer archive's entries (name, type, content offset and size) by reading headers only:
// bodies are skipped by arithmetic, so indexing costs one small read per entry whatever the sizes.
import { ErrorCode, LongshoreError, TRUNCATED, throwIfAborted } from '../errors.ts';
import { BLOCK_SIZE, TarEntryType, decodeHeader, isZeroBlock, paddingFor, parsePax, type TarEntryHeader } from '../tar/header.ts';
import { ExtendedHeaders, type MetadataKind } from '../tar/extended.ts';
import { cleanPath } from '../listing/entry.ts';
import type { RandomAccess } from './random-access.ts';

export interface IndexedEntry {
  /** Clean relative path. */
  path: string;
  header: TarEntryHeader;
  /** Byte offset of the content in the archive. */
  offset: number;
  size: number;
}

export interface IndexTarOptions {
  signal?: AbortSignal;
  maxEntries?: number;
  maxPaxBytes?: number;
}

const READ_AHEAD = 64 * 1024;

/** Serves small reads from a sliding window, so a run of headers costs one read. */
class ReadAhead {
  #start = 0;
  #bytes: Uint8Array = new Uint8Array(0);
  constructor(private readonly source: RandomAccess) {}
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < this.#start || offset + length > this.#start + this.#bytes.length) {
      this.#bytes = await this.source.read(offset, Math.max(length, READ_AHEAD));
      this.#start = offset;
    }
    const from = offset - this.#start;
    return this.#bytes.subarray(from, Math.min(this.#bytes.length, from + length));
  }
}

function formatError(message: string, data: Record<string, unknown> = {}): LongshoreError {
  return new LongshoreError(ErrorCode.Format, message, { hint: 'The file is not a complete tar archive of an image.', data });
}

function cString(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? data : data.subarray(0, nul));
}

export async function indexTar(source: RandomAccess, options: IndexTarOptions = {}): Promise<IndexedEntry[]> {
  const maxEntries = options.maxEntries ?? 1_000_000;
  const maxPax = options.maxPaxBytes ?? 1024 * 1024;
  const ahead = new ReadAhead(source);
  const out: IndexedEntry[] = [];
  let pos = 0;
  const extended = new ExtendedHeaders(maxPax);
  const meta = async (header: TarEntryHeader, at: number, what: MetadataKind): Promise<Uint8Array> => {
    extended.admit(header.size, at, what);
    const data = await ahead.read(at + BLOCK_SIZE, header.size);
    if (data.length < header.size)
      throw formatError(`The archive is truncated inside an extended header at byte ${at}.`, { offset: at, ...TRUNCATED });
    return data.slice();
  };
  while (pos + BLOCK_SIZE <= source.size) {
    throwIfAborted(options.signal);
    const block = await ahead.read(pos, BLOCK_SIZE);
    if (block.length < BLOCK_SIZE) break;
    if (isZeroBlock(block)) break;
    const header = decodeHeader(block.slice(), pos);
    if (header === null) break;
    const next = pos + BLOCK_SIZE + header.size + paddingFor(header.size);
    switch (header.type) {
      case TarEntryType.PaxExtended:
        extended.local(parsePax(await meta(header, pos, 'PAX extended header')));
        pos = next;
        continue;
      case TarEntryType.PaxGlobal:
        extended.global(parsePax(await meta(header, pos, 'PAX global header')), pos);
        pos = next;
        continue;
      case TarEntryType.GnuLongName:
        extended.longName(cString(await meta(header, pos, 'GNU long name')));
        pos = next;
        continue;
      case TarEntryType.GnuLongLink:
        extended.longLink(cString(await meta(header, pos, 'GNU long link name')));
        pos = next;
        continue;
    }
    extended.applyTo(header, pos);
    const hasBody = header.type === TarEntryType.File;
    const size = hasBody ? header.size : 0;
    const end = pos + BLOCK_SIZE + size;
    if (end > source.size)
      throw formatError(
        `The archive is truncated: "${header.path}" needs ${size} bytes from byte ${pos + BLOCK_SIZE}, the file has ${source.size}.`,
        { path: header.path, ...TRUNCATED },
      );
    const clean = cleanPath(header.path);
    if (clean.ok) out.push({ path: clean.path, header, offset: pos + BLOCK_SIZE, size });
    if (out.length > maxEntries) throw formatError(`The archive has more than ${maxEntries} entries.`);
    pos = end + paddingFor(size);
  }
  return out;
}
