// Write a format's entries to a destination in archive order while a pull is still running: bytes
// in hand (headers, small documents, padding) at once, each stored blob when its turn comes and it
// has been verified and stored (`ready`), an unsized entry (a layer still being decompressed) with
// its header encoded once the blob's size is known. The bytes are exactly planTar's for the same
// entries once sized (tests/unit/stream-archive.test.ts), so a streamed archive equals a composed one.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { END_OF_ARCHIVE_SIZE, encodeHeader, paddingFor } from '../tar/header.ts';
import { isContentRef, planTar } from '../tar/writer.ts';
import { sizedEntries } from './entries.ts';
import { isLaterRef, type FormatEntry } from './types.ts';

/** Where an archive goes (a picked file, a download stream, a Blob): appended to, in order. */
export interface ArchiveSink {
  write(bytes: Uint8Array): Promise<void>;
  /** Append the stored, verified blob `key`, exactly `size` bytes; `at` is where its bytes start in the archive. */
  copy(key: string, size: number, at: number): Promise<void>;
  /**
   * Append blob `key` of the planned `size` while it is still arriving, bytes behind its hash
   * cursor, resolving once all of it is written and it was verified and stored. Only for sinks
   * whose destination becomes final solely when the whole pull succeeded (a failed digest fails
   * the pull, which aborts it). Absent: the writer waits for the verified blob and copies it. `at`:
   * where the blob's bytes start in the archive (a sink that can write anywhere may place them there
   * later and resolve at once; writeEntries then goes on with the entries after it).
   */
  follow?(key: string, size: number, at: number): Promise<void>;
}

/** Resolves with the size of blob `key` once it is verified and stored; rejects if the pull failed. */
export type BlobReady = (key: string) => Promise<number>;

/** Small byte runs are joined up to this size before they reach the sink (one write per header would cost a call each). */
const JOIN_BYTES = 256 * 1024;

/** The archive's exact size, or undefined while an entry is unsized (legacy before its layers are decompressed). */
export function plannedSize(entries: readonly FormatEntry[]): number | undefined {
  return entries.some((e) => isLaterRef(e.content)) ? undefined : planTar(sizedEntries(entries)).size;
}

/** Stored blobs in the order the archive needs them, each once (to fetch them in that order). */
export function blobOrder(entries: readonly FormatEntry[]): string[] {
  const keys = new Set<string>();
  for (const e of entries) if (isContentRef(e.content) || isLaterRef(e.content)) keys.add(e.content.key);
  return [...keys];
}

/** How many entries use each stored blob (a blob may be written twice, e.g. under two legacy layer ids). */
export function blobUses(entries: readonly FormatEntry[]): Map<string, number> {
  const uses = new Map<string, number>();
  for (const e of entries)
    if (isContentRef(e.content) || isLaterRef(e.content)) uses.set(e.content.key, (uses.get(e.content.key) ?? 0) + 1);
  return uses;
}

/**
 * Write `entries` as a tar to `sink`, waiting for each stored blob with `ready`; `onCopied` is told
 * after each blob went in (e.g. to drop a temporary copy). Returns the bytes written.
 */
export async function writeEntries(
  entries: readonly FormatEntry[],
  sink: ArchiveSink,
  ready: BlobReady,
  options: { signal?: AbortSignal; onCopied?: (key: string) => void | Promise<void> } = {},
): Promise<number> {
  const { signal } = options;
  let written = 0;
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const push = (bytes: Uint8Array) => {
    if (bytes.byteLength === 0) return;
    run.push(bytes);
    runBytes += bytes.byteLength;
  };
  const flush = async () => {
    if (runBytes === 0) return;
    const joined = run.length === 1 ? run[0]! : join(run, runBytes);
    run = [];
    runBytes = 0;
    await sink.write(joined);
    written += joined.byteLength;
  };
  for (const entry of entries) {
    signal?.throwIfAborted();
    const content = entry.content;
    if (isContentRef(content) && sink.follow) {
      // The size is planned (the descriptor's, or the stored blob's): the header goes first, the
      // blob follows its download; follow() checks it is exactly that size.
      push(encodeHeader({ ...entry.header, size: content.size }));
      await flush();
      await sink.follow(content.key, content.size, written);
      written += content.size;
      await options.onCopied?.(content.key);
      push(new Uint8Array(paddingFor(content.size)));
      continue;
    }
    if (isContentRef(content) || isLaterRef(content)) {
      // Bytes before the blob go out first: a destination sees the archive grow while it waits.
      await flush();
      const size = await ready(content.key);
      signal?.throwIfAborted();
      if (isContentRef(content) && size !== content.size) {
        throw new LongshoreError(
          ErrorCode.Store,
          `The stored blob ${content.key} is ${size} bytes, but the archive planned ${content.size}.`,
          { data: { key: content.key, expected: content.size, actual: size } },
        );
      }
      push(encodeHeader({ ...entry.header, size }));
      await flush();
      await sink.copy(content.key, size, written);
      written += size;
      await options.onCopied?.(content.key);
      push(new Uint8Array(paddingFor(size)));
      continue;
    }
    push(encodeHeader(entry.header));
    if (content) push(content);
    push(new Uint8Array(paddingFor(entry.header.size)));
    if (runBytes >= JOIN_BYTES) await flush();
  }
  push(new Uint8Array(END_OF_ARCHIVE_SIZE));
  await flush();
  return written;
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
