// The merged filesystem as one tar, like `crane export` (go-containerregistry mutate.Extract):
// the same set of entries a top-down merge keeps, whiteouts applied, plus what crane leaves out:
// opaque markers honoured and unsafe names dropped (they never reach the index). Layers are read
// bottom first, each once, so a hardlink always follows the file it points at; a hardlink whose
// file was replaced or deleted upstairs becomes a copy of that file, written where the file passes.
// Only the plan (headers, no content) is held: bodies stream from the layer blobs.
import { AbortedError, throwIfAborted } from '../errors.ts';
import { TarEntryType, encodeHeader, endOfArchive, paddingFor, type TarEntryHeader } from '../tar/header.ts';
import { readTar } from '../tar/reader.ts';
import { EntryKind, type ListingEntry, type ListingIssue } from './entry.ts';
import type { MergedFilesystem } from './merge.ts';

export interface ExportItem {
  header: TarEntryHeader;
  /** Copy the source entry's content after the header. */
  body: boolean;
}

export interface ExportPlan {
  /** layer → ordinal → what to write when that entry passes. */
  layers: Map<number, Map<number, ExportItem[]>>;
  entries: number;
  /** Content bytes the archive will carry. */
  bytes: number;
  dropped: ListingIssue[];
}

const TAR_TYPE: Partial<Record<EntryKind, TarEntryHeader['type']>> = {
  file: TarEntryType.File,
  dir: TarEntryType.Directory,
  symlink: TarEntryType.Symlink,
  hardlink: TarEntryType.Hardlink,
  char: TarEntryType.CharDevice,
  block: TarEntryType.BlockDevice,
  fifo: TarEntryType.Fifo,
};

function headerFor(path: string, e: ListingEntry): TarEntryHeader {
  const type = TAR_TYPE[e.kind] ?? TarEntryType.File;
  const header: TarEntryHeader = {
    path: e.kind === EntryKind.Dir ? `${path}/` : path,
    type,
    size: e.kind === EntryKind.File ? e.size : 0,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
  };
  if (e.uname) header.uname = e.uname;
  if (e.gname) header.gname = e.gname;
  if (e.linkTarget !== undefined && e.linkTarget !== '') header.linkname = e.linkTarget;
  if (e.kind === EntryKind.CharDevice || e.kind === EntryKind.BlockDevice) {
    header.devmajor = e.devMajor ?? 0;
    header.devminor = e.devMinor ?? 0;
  }
  if (e.xattrs) header.pax = { ...e.xattrs };
  return header;
}

/** Plan the export of a merged filesystem; `layerEntries` gives each layer's listing (for hardlink sources). */
export function planExport(merged: MergedFilesystem, layerEntries: readonly (readonly ListingEntry[])[]): ExportPlan {
  const layers = new Map<number, Map<number, ExportItem[]>>();
  const dropped: ListingIssue[] = [];
  let entries = 0;
  let bytes = 0;
  const at = (layer: number, ordinal: number): ExportItem[] => {
    let byOrdinal = layers.get(layer);
    if (!byOrdinal) layers.set(layer, (byOrdinal = new Map()));
    let list = byOrdinal.get(ordinal);
    if (!list) byOrdinal.set(ordinal, (list = []));
    return list;
  };
  const byOrdinal = layerEntries.map((list) => new Map(list.map((e) => [e.ordinal, e])));
  // Which merged path holds each source entry now (a source is "alive" when its own path still shows it).
  const alive = new Set<string>();
  for (const m of merged.entries) if (!m.implicit) alive.add(`${m.layer}:${m.entry.ordinal}`);
  // A replaced source's content goes to the first hardlink that needs it; later ones link to that path.
  const promoted = new Map<string, string>();

  for (const m of merged.entries) {
    if (m.implicit) continue;
    const e = m.entry;
    if (e.kind !== EntryKind.Hardlink) {
      at(m.layer, e.ordinal).push({ header: headerFor(m.path, e), body: e.kind === EntryKind.File && e.size > 0 });
      entries++;
      bytes += e.size;
      continue;
    }
    const source = m.linkSource;
    const sourceEntry = source ? byOrdinal[source.layer]?.get(source.ordinal) : undefined;
    if (!source || !sourceEntry) {
      dropped.push({
        code: 'dangling-hardlink',
        path: m.path,
        ordinal: e.ordinal,
        message: `Left out /${m.path}: a hardlink to /${e.linkTarget}, which does not exist.`,
      });
      continue;
    }
    const key = `${source.layer}:${source.ordinal}`;
    if (alive.has(key)) {
      at(m.layer, e.ordinal).push({ header: { ...headerFor(m.path, e), linkname: source.path }, body: false });
    } else if (promoted.has(key)) {
      at(m.layer, e.ordinal).push({
        header: { ...headerFor(m.path, e), type: TarEntryType.Hardlink, size: 0, linkname: promoted.get(key)! },
        body: false,
      });
    } else {
      // The linked inode outlives its first name: write it here, with the inode's attributes.
      promoted.set(key, m.path);
      at(source.layer, source.ordinal).push({
        header: headerFor(m.path, sourceEntry),
        body: sourceEntry.kind === EntryKind.File && sourceEntry.size > 0,
      });
      bytes += sourceEntry.size;
    }
    entries++;
  }
  return { layers, entries, bytes, dropped };
}

export interface ExportOptions {
  signal?: AbortSignal;
  /** The layer's tar, decompressed. */
  openLayer: (layer: number, signal?: AbortSignal) => Promise<ReadableStream<Uint8Array>>;
  /** Called after each entry is written, with the content bytes written so far. */
  onProgress?: (done: { entries: number; bytes: number }) => void;
  maxPaxBytes?: number;
}

async function* exportChunks(plan: ExportPlan, options: ExportOptions): AsyncGenerator<Uint8Array, void, undefined> {
  const { signal } = options;
  const progress = { entries: 0, bytes: 0 };
  for (const layer of [...plan.layers.keys()].sort((a, b) => a - b)) {
    const wanted = plan.layers.get(layer)!;
    let remaining = wanted.size;
    const last = Math.max(...wanted.keys());
    let ordinal = 0;
    for await (const tarEntry of readTar(await options.openLayer(layer, signal), {
      signal,
      ...(options.maxPaxBytes ? { maxPaxBytes: options.maxPaxBytes } : {}),
    })) {
      const items = wanted.get(ordinal++);
      if (items) {
        for (const item of items) {
          yield encodeHeader(item.header);
          if (item.body) {
            const reader = tarEntry.body().getReader();
            let copied = 0;
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              copied += value.byteLength;
              progress.bytes += value.byteLength;
              // The reader's chunks may be views into its buffers; hand out copies.
              yield value.slice();
            }
            if (copied !== item.header.size) throw new Error(`${item.header.path}: copied ${copied} of ${item.header.size} bytes`);
            const pad = paddingFor(item.header.size);
            if (pad) yield new Uint8Array(pad);
          }
          progress.entries++;
          options.onProgress?.(progress);
        }
        if (--remaining === 0) break;
      }
      if (ordinal > last) break;
    }
    if (remaining > 0) throw new Error(`Layer ${layer + 1} ended before ${remaining} of its listed entries were read again.`);
  }
  yield endOfArchive();
}

/** The export as a stream of tar bytes; pulling drives the reading, so memory stays flat. */
export function exportStream(plan: ExportPlan, options: ExportOptions): ReadableStream<Uint8Array> {
  let chunks: AsyncGenerator<Uint8Array, void, undefined> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          throwIfAborted(options.signal);
          chunks ??= exportChunks(plan, options);
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        } catch (err) {
          controller.error(options.signal?.aborted ? new AbortedError() : err);
          await chunks?.return().catch(() => undefined);
        }
      },
      async cancel() {
        await chunks?.return().catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
