// Streaming tar reader: entries one after another, each body streamed from the input, so an
// archive of any size is read in constant memory. Understands ustar, PAX ('x', 'g') and GNU ('L', 'K').
import { AbortedError, TRUNCATED, throwIfAborted } from '../errors.ts';
import { BLOCK_SIZE, TarEntryType, decodeHeader, isZeroBlock, paddingFor, parsePax, tarError, type TarEntryHeader } from './header.ts';
import { ExtendedHeaders, type MetadataKind } from './extended.ts';

export interface ReadTarOptions {
  signal?: AbortSignal;
  /**
   * Largest PAX or GNU long-name header data accepted, in bytes (default 1 MiB): for each header,
   * and for all of them between two entries together.
   */
  maxPaxBytes?: number;
}

export const DEFAULT_MAX_PAX_BYTES = 1024 * 1024;

/**
 * One entry. Its content is read from the archive stream as it passes, so use it before asking the
 * iterator for the next entry; whatever is left unread then is skipped. Use one of body() or
 * bytes(), once.
 */
export interface TarEntry {
  readonly header: TarEntryHeader;
  /** The content as a stream (no read-ahead). Chunks may be views into the input's chunks. */
  body(): ReadableStream<Uint8Array>;
  /** The whole content in one array; for entries known to be small. */
  bytes(): Promise<Uint8Array>;
  /** Discard the rest of the content now (advancing does it anyway). */
  skip(): Promise<void>;
}

// Types that carry no data whatever their size field says; the pax spec says so for 3, 4 and 6, and
// Go's archive/tar (which writes and reads container layers) applies it to all six.
const HEADER_ONLY: ReadonlySet<string> = new Set([
  TarEntryType.Hardlink,
  TarEntryType.Symlink,
  TarEntryType.CharDevice,
  TarEntryType.BlockDevice,
  TarEntryType.Directory,
  TarEntryType.Fifo,
]);

/**
 * Read entries from a tar stream. Ends at the end-of-archive marker, or at a clean end of stream
 * on a header boundary (some writers, umoci among them, omit the marker). After the marker the
 * rest of the stream is drained so upstream verifiers see its end. Breaking out of the loop
 * cancels the stream.
 */
export function readTar(stream: ReadableStream<Uint8Array>, options: ReadTarOptions = {}): AsyncGenerator<TarEntry, void, undefined> {
  if (typeof stream?.getReader !== 'function') throw tarError('readTar expects a ReadableStream.');
  const maxPaxBytes = options.maxPaxBytes ?? DEFAULT_MAX_PAX_BYTES;
  if (!Number.isSafeInteger(maxPaxBytes) || maxPaxBytes < 0) {
    throw tarError(`maxPaxBytes must be a non-negative integer, not ${String(maxPaxBytes)}.`);
  }
  return entries(stream, options.signal, maxPaxBytes);
}

async function* entries(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
  maxPaxBytes: number,
): AsyncGenerator<TarEntry, void, undefined> {
  throwIfAborted(signal);
  const reader = stream.getReader();
  const source = new ByteSource(reader, signal);
  const onAbort = (): void => void reader.cancel(signal?.reason).catch(() => undefined);
  signal?.addEventListener('abort', onAbort, { once: true });
  let completed = false;
  let current: StreamedEntry | undefined;
  try {
    const meta = new ExtendedHeaders(maxPaxBytes);

    for (;;) {
      const offset = source.position;
      const block = await source.readExact(BLOCK_SIZE);
      if (block.length === 0) break;
      if (block.length < BLOCK_SIZE) {
        throw tarError(
          `Tar archive is truncated: it ends inside a header at byte offset ${offset} (${block.length} of ${BLOCK_SIZE} bytes).`,
          { offset, received: block.length, ...TRUNCATED },
        );
      }
      const raw = decodeHeader(block, offset);
      if (raw === null) {
        await endOfArchive(source, offset);
        break;
      }

      switch (raw.type) {
        case TarEntryType.PaxExtended:
          meta.local(parsePax(await readMeta(source, raw, offset, meta, 'PAX extended header')));
          continue;
        case TarEntryType.PaxGlobal:
          meta.global(parsePax(await readMeta(source, raw, offset, meta, 'PAX global header')), offset);
          continue;
        case TarEntryType.GnuLongName:
          meta.longName(cString(await readMeta(source, raw, offset, meta, 'GNU long name')));
          continue;
        case TarEntryType.GnuLongLink:
          meta.longLink(cString(await readMeta(source, raw, offset, meta, 'GNU long link name')));
          continue;
      }

      const header = raw;
      meta.applyTo(header, offset);
      if (HEADER_ONLY.has(header.type)) header.size = 0;

      current = new StreamedEntry(header, source, offset);
      yield current;
      await current.advance();
      current = undefined;
    }
    if (meta.pending) {
      throw tarError(
        `Tar archive is truncated: it ends after an extended header, before the entry it describes (byte offset ${source.position}).`,
        { offset: source.position, ...TRUNCATED },
      );
    }
    await source.drain();
    completed = true;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    current?.detach();
    if (completed) reader.releaseLock();
    else await reader.cancel().catch(() => undefined);
  }
}

/** After one zero block: a second one (or the end of the stream) ends the archive. */
async function endOfArchive(source: ByteSource, offset: number): Promise<void> {
  const next = await source.readExact(BLOCK_SIZE);
  if (isZeroBlock(next)) return;
  throw tarError(`Tar archive has a lone zero block at byte offset ${offset} followed by more data.`, { offset });
}

async function readMeta(
  source: ByteSource,
  raw: TarEntryHeader,
  offset: number,
  meta: ExtendedHeaders,
  what: MetadataKind,
): Promise<Uint8Array> {
  meta.admit(raw.size, offset, what);
  const data = await source.readExact(raw.size);
  if (data.length < raw.size) {
    throw tarError(`Tar archive is truncated: the ${what} at byte offset ${offset} has ${data.length} of ${raw.size} bytes.`, {
      offset,
      expected: raw.size,
      received: data.length,
      ...TRUNCATED,
    });
  }
  await source.skip(paddingFor(raw.size));
  return data;
}

function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return new TextDecoder('utf-8').decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

class StreamedEntry implements TarEntry {
  readonly header: TarEntryHeader;
  readonly #source: ByteSource;
  readonly #offset: number;
  #remaining: number;
  #claimed: 'body' | 'bytes' | undefined;
  #passed = false;
  // Set once skip() or advancing threw content away: a held body stream must not end quietly short.
  #discarded = false;
  // Source reads for this entry run one at a time, in call order.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(header: TarEntryHeader, source: ByteSource, offset: number) {
    this.header = header;
    this.#source = source;
    this.#offset = offset;
    this.#remaining = header.size;
  }

  body(): ReadableStream<Uint8Array> {
    this.#claim('body');
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const chunk = await this.#run(async () => {
            if (this.#discarded) throw this.#gone();
            if (this.#remaining === 0) return null;
            this.#checkCurrent();
            const bytes = await this.#source.readUpTo(this.#remaining);
            if (bytes === null) throw this.#truncated();
            this.#remaining -= bytes.length;
            return bytes;
          });
          if (chunk !== null) controller.enqueue(chunk);
          if (this.#remaining === 0) controller.close();
        },
      },
      // No read-ahead: the source must not move past this entry until asked.
      { highWaterMark: 0 },
    );
  }

  bytes(): Promise<Uint8Array> {
    try {
      this.#claim('bytes');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#run(async () => {
      const out = new Uint8Array(this.#remaining);
      let offset = 0;
      while (this.#remaining > 0) {
        const chunk = await this.#source.readUpTo(this.#remaining);
        if (chunk === null) throw this.#truncated();
        out.set(chunk, offset);
        offset += chunk.length;
        this.#remaining -= chunk.length;
      }
      return out;
    });
  }

  skip(): Promise<void> {
    if (this.#passed) return Promise.resolve();
    return this.#run(() => this.#skipRest());
  }

  /** Called by the iterator before it reads the next header. */
  async advance(): Promise<void> {
    this.#passed = true;
    await this.#run(async () => {
      await this.#skipRest();
      // A stream that ends inside the final padding has lost only zeros; the next read sees the end.
      await this.#source.skip(paddingFor(this.header.size));
    });
  }

  /** The iterator is gone (finished, broken out of, or failed): no more reads. */
  detach(): void {
    this.#passed = true;
  }

  async #skipRest(): Promise<void> {
    if (this.#remaining > 0) this.#discarded = true;
    const skipped = await this.#source.skip(this.#remaining);
    this.#remaining -= skipped;
    if (this.#remaining > 0) throw this.#truncated();
  }

  #claim(how: 'body' | 'bytes'): void {
    this.#checkCurrent();
    if (this.#claimed !== undefined) {
      throw tarError(`The content of tar entry "${this.header.path}" was already read with ${this.#claimed}().`, {
        path: this.header.path,
      });
    }
    this.#claimed = how;
  }

  #checkCurrent(): void {
    if (this.#passed || this.#discarded) throw this.#gone();
  }

  #gone(): Error {
    const why = this.#passed ? 'the reader has moved past it' : 'it was skipped';
    return tarError(
      `The content of tar entry "${this.header.path}" is gone: ${why}.`,
      { path: this.header.path },
      "Read each entry's body before asking for the next entry.",
    );
  }

  #run<T>(step: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(step);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #truncated(): Error {
    const received = this.header.size - this.#remaining;
    return tarError(
      `Tar archive is truncated: entry "${this.header.path}" (header at byte offset ${this.#offset}) has ${received} of ${this.header.size} content bytes.`,
      { path: this.header.path, offset: this.#offset, expected: this.header.size, received, ...TRUNCATED },
      'The download or the stored blob is incomplete.',
    );
  }
}

/** Pulls from a stream reader, serving exact-size and bounded reads; counts bytes consumed. */
class ByteSource {
  position = 0;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #signal: AbortSignal | undefined;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #done = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal | undefined) {
    this.#reader = reader;
    this.#signal = signal;
  }

  /** Up to `max` (> 0) bytes as a view of the current chunk; null at the end of the stream. */
  async readUpTo(max: number): Promise<Uint8Array | null> {
    if (!(await this.#fill())) return null;
    const n = Math.min(max, this.#chunk.length - this.#offset);
    const bytes = this.#chunk.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    this.position += n;
    return bytes;
  }

  /** Exactly `n` bytes, or fewer if the stream ends first. */
  async readExact(n: number): Promise<Uint8Array> {
    if (n === 0) return new Uint8Array(0);
    const first = await this.readUpTo(n);
    if (first === null || first.length === n) return first ?? new Uint8Array(0);
    const out = new Uint8Array(n);
    out.set(first, 0);
    let filled = first.length;
    while (filled < n) {
      const more = await this.readUpTo(n - filled);
      if (more === null) return out.subarray(0, filled);
      out.set(more, filled);
      filled += more.length;
    }
    return out;
  }

  /** Discard up to `n` bytes; returns how many were discarded (fewer only at the end). */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const bytes = await this.readUpTo(n - skipped);
      if (bytes === null) break;
      skipped += bytes.length;
    }
    return skipped;
  }

  /** Read and discard everything left. */
  async drain(): Promise<void> {
    while ((await this.readUpTo(Number.MAX_SAFE_INTEGER)) !== null);
  }

  async #fill(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      if (this.#done) return false;
      throwIfAborted(this.#signal);
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (err) {
        if (this.#signal?.aborted) throw new AbortedError();
        throw err;
      }
      // Cancelling on abort ends a pending read as if the stream were done: report the abort.
      throwIfAborted(this.#signal);
      if (result.done) {
        this.#done = true;
        return false;
      }
      if (!(result.value instanceof Uint8Array)) throw tarError('A tar stream must yield Uint8Array chunks.');
      this.#chunk = result.value;
      this.#offset = 0;
    }
    return true;
  }
}
