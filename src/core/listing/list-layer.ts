// Layer blob → entries: decompress (sniffed), read the tar, turn each header into an entry. Bodies
// are skipped, never held. Hostile input ends in a bounded, explained result: caps on entries and
// decompressed bytes (a gzip bomb stops at the cap), truncation and malformed headers keep the
// entries read so far and say what went wrong.
import { decompress, type Compression } from '../compression.ts';
import { AbortedError, ErrorCode, LongshoreError, isAbortError, isTruncation, throwIfAborted } from '../errors.ts';
import { readTar } from '../tar/reader.ts';
import { countEntry, emptyTotals, entryFromHeader, type LayerTotals, type ListingEntry, type ListingIssue } from './entry.ts';

export interface ListingLimits {
  /** Most entries read from one layer. */
  maxEntries: number;
  /** Most decompressed bytes read from one layer (bounds a decompression bomb). */
  maxBytes: number;
  /** Issues kept in full per layer (all are counted). */
  maxIssues: number;
  /** Largest PAX / GNU long-name header accepted (passed to the tar reader). */
  maxPaxBytes: number;
}

export const DEFAULT_LISTING_LIMITS: ListingLimits = Object.freeze({
  maxEntries: 2_000_000,
  maxBytes: 32 * 1024 ** 3,
  maxIssues: 500,
  maxPaxBytes: 1024 * 1024,
});

export type ListingStatus = 'listing' | 'complete' | 'limited' | 'failed';

export interface LayerListing {
  status: ListingStatus;
  entries: ListingEntry[];
  issues: ListingIssue[];
  issueCount: number;
  totals: LayerTotals;
  /** Decompressed tar bytes read so far. */
  bytes: number;
  compression: Compression | undefined;
  /** Why the listing stopped early ('limited' or 'failed'). */
  error?: LongshoreError;
}

export interface ListLayerOptions {
  signal?: AbortSignal;
  limits?: Partial<ListingLimits>;
  /** A zstd decoder, when the platform has one (compression.ts). */
  zstd?: () => TransformStream<Uint8Array, Uint8Array>;
  /**
   * Called every `batchSize` entries and at the end, with the same (growing) listing. Reading
   * waits for a returned promise, so a caller can yield to its event loop between batches.
   */
  onProgress?: (listing: LayerListing) => void | Promise<void>;
  batchSize?: number;
}

export class ListingLimitError extends LongshoreError {
  constructor(what: 'entries' | 'bytes', limit: number) {
    const text = what === 'entries' ? `${limit} entries` : `${limit} decompressed bytes`;
    super(ErrorCode.TooLarge, `The layer has more than ${text}; listing stopped there.`, {
      hint: 'The listing shows what was read before the limit. A layer this large may be a decompression bomb.',
      data: { limit, what },
    });
  }
}

export function newListing(): LayerListing {
  return { status: 'listing', entries: [], issues: [], issueCount: 0, totals: emptyTotals(), bytes: 0, compression: undefined };
}

/** Counts decompressed bytes and fails the stream once they pass `max`. */
function byteCap(max: number, listing: LayerListing): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      listing.bytes += chunk.byteLength;
      if (listing.bytes > max) {
        // Pass only what fits, so the reader sees at most `max` bytes.
        const over = listing.bytes - max;
        listing.bytes = max;
        if (chunk.byteLength > over) controller.enqueue(chunk.subarray(0, chunk.byteLength - over));
        controller.error(new ListingLimitError('bytes', max));
        return;
      }
      controller.enqueue(chunk);
    },
  });
}

function addIssue(listing: LayerListing, issue: ListingIssue, max: number): void {
  listing.issueCount++;
  if (listing.issues.length < max) listing.issues.push(issue);
}

/**
 * List a layer from its stored (compressed or plain) bytes. Resolves with the listing whatever
 * happened to the data; rejects only when aborted.
 */
export async function listLayer(blob: ReadableStream<Uint8Array>, options: ListLayerOptions = {}): Promise<LayerListing> {
  const limits: ListingLimits = { ...DEFAULT_LISTING_LIMITS, ...options.limits };
  const batchSize = options.batchSize ?? 2000;
  const listing = newListing();
  const { signal } = options;
  let capError: ListingLimitError | undefined;
  try {
    throwIfAborted(signal);
    const opened = await decompress(blob, options.zstd ? { zstd: options.zstd } : {});
    listing.compression = opened.compression;
    const capped = opened.stream.pipeThrough(byteCap(limits.maxBytes, listing));
    let ordinal = 0;
    for await (const tarEntry of readTar(capped, { signal, maxPaxBytes: limits.maxPaxBytes })) {
      if (ordinal >= limits.maxEntries) {
        capError = new ListingLimitError('entries', limits.maxEntries);
        break;
      }
      const { entry, issues } = entryFromHeader(tarEntry.header, ordinal++);
      for (const issue of issues) addIssue(listing, issue, limits.maxIssues);
      if (entry) {
        listing.entries.push(entry);
        countEntry(listing.totals, entry);
      }
      if (ordinal % batchSize === 0) await options.onProgress?.(listing);
    }
    if (capError) throw capError;
    listing.status = 'complete';
  } catch (err) {
    if (signal?.aborted || (isAbortError(err) && !(err instanceof ListingLimitError))) throw new AbortedError();
    const error = err instanceof ListingLimitError ? err : LongshoreError.from(err);
    listing.status = error instanceof ListingLimitError ? 'limited' : 'failed';
    listing.error = error;
    addIssue(
      listing,
      {
        code: error instanceof ListingLimitError ? 'limit' : isTruncation(error) ? 'truncated' : 'read-error',
        path: '',
        message: error.message,
      },
      limits.maxIssues,
    );
  }
  await options.onProgress?.(listing);
  return listing;
}
