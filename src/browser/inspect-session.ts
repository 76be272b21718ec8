// One inspection, as the inspect worker runs it: list every layer (bottom first, the one being
// looked at first), keep a query view per layer, merge once all are listed, and stream single
// files and the merged export out of the layer blobs. Plain TypeScript with injected sources and
// sinks, so it runs under Node in tests as in the Worker.
import { decompress } from '../core/compression.ts';
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import {
  ListingView,
  exportStream,
  layerItems,
  listLayer,
  mergeLayers,
  openEntryBody,
  planExport,
  EntryKind,
  type LayerListing,
  type ListingEntry,
  type ListingLimits,
  type MergedFilesystem,
  type ViewItem,
  type ViewQuery,
  type ViewRow,
} from '../core/listing/index.ts';
import type { ExportProgress, FileResult, LayerStatus, SessionStatus, ViewId } from './inspect-protocol.ts';

const YIELD_EVERY_MS = 30;

export interface LayerBlobSource {
  /** The layer's bytes as stored (compressed or not). */
  open(): Promise<ReadableStream<Uint8Array>>;
}

export interface SessionOptions {
  id: number;
  layers: LayerBlobSource[];
  /** Name for the export file ("alpine_3.20"). */
  name: string;
  limits?: Partial<ListingLimits>;
  zstd?: () => TransformStream<Uint8Array, Uint8Array>;
  /** Turns a stream into a Blob without holding it in memory (IndexedDB in the worker). */
  toBlob(stream: ReadableStream<Uint8Array>, type: string): Promise<Blob>;
  /** Something changed; the caller throttles. */
  onChange(): void;
  /** Layers listed at once. */
  concurrency?: number;
}

interface LayerState {
  listing: LayerListing | undefined;
  view: ListingView;
  added: number;
  started: boolean;
  done: Promise<void>;
  resolve: () => void;
}

export class InspectSession {
  readonly id: number;
  readonly #options: SessionOptions;
  readonly #layers: LayerState[];
  readonly #abort = new AbortController();
  #queue: number[];
  #running = 0;
  #merged: { fs: MergedFilesystem; view: ListingView; partial: boolean } | undefined;

  constructor(options: SessionOptions) {
    this.id = options.id;
    this.#options = options;
    this.#layers = options.layers.map(() => {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      return { listing: undefined, view: new ListingView(), added: 0, started: false, done, resolve };
    });
    this.#queue = this.#layers.map((_, i) => i);
    this.#pump();
  }

  close(): void {
    this.#abort.abort();
  }

  /** List this layer next (the one on screen). */
  prioritise(layer: number): void {
    if (!this.#layers[layer] || this.#layers[layer]!.started) return;
    this.#queue = [layer, ...this.#queue.filter((i) => i !== layer)];
    this.#pump();
  }

  #pump(): void {
    const max = this.#options.concurrency ?? 2;
    while (this.#running < max && this.#queue.length) {
      const index = this.#queue.shift()!;
      const state = this.#layers[index]!;
      if (state.started) continue;
      state.started = true;
      this.#running++;
      void this.#list(index, state).finally(() => {
        this.#running--;
        state.resolve();
        if (this.#layers.every((l) => l.listing && l.listing.status !== 'listing')) this.#merge();
        this.#options.onChange();
        this.#pump();
      });
    }
  }

  async #list(index: number, state: LayerState): Promise<void> {
    let lastYield = Date.now();
    const sync = async (listing: LayerListing) => {
      state.listing = listing;
      if (listing.entries.length > state.added) {
        state.view.add(layerItems(listing.entries.slice(state.added), index));
        state.added = listing.entries.length;
      }
      this.#options.onChange();
      // Buffered input resolves reads as microtasks: without a macrotask now and then, status
      // timers and row queries would wait for the whole layer.
      if (Date.now() - lastYield > YIELD_EVERY_MS) {
        await new Promise((r) => setTimeout(r, 0));
        lastYield = Date.now();
      }
    };
    try {
      const blob = await this.#options.layers[index]!.open();
      await listLayer(blob, {
        signal: this.#abort.signal,
        ...(this.#options.limits ? { limits: this.#options.limits } : {}),
        ...(this.#options.zstd ? { zstd: this.#options.zstd } : {}),
        onProgress: sync,
        batchSize: 1000,
      });
    } catch (err) {
      if (this.#abort.signal.aborted) return;
      const listing = state.listing ?? {
        status: 'failed',
        entries: [],
        issues: [],
        issueCount: 0,
        totals: { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, devices: 0, whiteouts: 0, opaques: 0, bytes: 0 },
        bytes: 0,
        compression: undefined,
      };
      listing.status = 'failed';
      listing.error = LongshoreError.from(err);
      listing.issueCount++;
      listing.issues.push({ code: 'read-error', path: '', message: listing.error.message });
      state.listing = listing;
    }
  }

  #merge(): void {
    if (this.#merged) return;
    const entries = this.#layers.map((l) => l.listing!.entries);
    const fs = mergeLayers(entries);
    // The layer views learn what each whiteout removed and where each hardlink's content lives.
    this.#layers.forEach((layer, i) => {
      const effects = fs.whiteouts[i]!;
      const links = fs.hardlinkSources[i]!;
      for (const item of layer.view.items) {
        const effect = effects.get(item.entry.ordinal);
        if (effect) item.whiteoutEffect = effect;
        const link = links.get(item.entry.ordinal);
        if (link) item.linkSource = link;
      }
    });
    const partial = this.#layers.some((l) => l.listing!.status !== 'complete');
    this.#merged = { fs, view: new ListingView(fs.entries as ViewItem[]), partial };
  }

  /** Resolves once every layer is listed and merged. */
  async settled(): Promise<void> {
    await Promise.all(this.#layers.map((l) => l.done));
  }

  status(): SessionStatus {
    const layers: LayerStatus[] = this.#layers.map((l, index) => {
      const listing = l.listing;
      const s: LayerStatus = {
        index,
        state: listing ? listing.status : 'waiting',
        entries: listing?.entries.length ?? 0,
        bytes: listing?.bytes ?? 0,
        totals: listing
          ? { ...listing.totals }
          : { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, devices: 0, whiteouts: 0, opaques: 0, bytes: 0 },
        issues: listing?.issues.slice(0, 50) ?? [],
        issueCount: listing?.issueCount ?? 0,
      };
      if (listing?.compression) s.compression = listing.compression;
      if (listing?.error) s.error = listing.error.toJSON();
      const changes = this.#merged?.fs.changes[index];
      if (changes) s.changes = changes;
      return s;
    });
    const m = this.#merged;
    return {
      session: this.id,
      layers,
      merged: m
        ? { state: m.partial ? 'partial' : 'ready', entries: m.view.size, totals: m.view.totals, issues: m.fs.issues.slice(0, 50) }
        : { state: 'waiting', entries: 0, issues: [] },
    };
  }

  #view(view: ViewId): ListingView | undefined {
    if (view === 'merged') return this.#merged?.view;
    return this.#layers[view]?.view;
  }

  query(view: ViewId, query: ViewQuery, start: number, count: number): { total: number; rows: ViewRow[] } {
    if (typeof view === 'number') this.prioritise(view);
    const v = this.#view(view);
    if (!v) return { total: 0, rows: [] };
    return v.rows(query, start, Math.min(count, 500));
  }

  #entry(layer: number, ordinal: number): ListingEntry | undefined {
    const items = this.#layers[layer]?.view.items;
    if (!items) return undefined;
    // Entries are in ordinal order: binary search.
    let lo = 0;
    let hi = items.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const o = items[mid]!.entry.ordinal;
      if (o === ordinal) return items[mid]!.entry;
      if (o < ordinal) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  async #layerTar(layer: number): Promise<ReadableStream<Uint8Array>> {
    const blob = await this.#options.layers[layer]!.open();
    return (await decompress(blob, this.#options.zstd ? { zstd: this.#options.zstd } : {})).stream;
  }

  /** One file's content, from any layer (a hardlink gives the content it shares). */
  async download(layer: number, ordinal: number, signal?: AbortSignal): Promise<FileResult> {
    const asked = this.#entry(layer, ordinal);
    if (!asked) throw new LongshoreError(ErrorCode.InvalidArgument, `Layer ${layer + 1} has no entry number ${ordinal + 1}.`);
    let source = { layer, entry: asked };
    if (asked.kind === EntryKind.Hardlink) {
      const link = this.#merged?.fs.hardlinkSources[layer]?.get(ordinal);
      const target = link ? this.#entry(link.layer, link.ordinal) : undefined;
      if (!link || !target)
        throw new LongshoreError(
          ErrorCode.InvalidArgument,
          `/${asked.path} is a hardlink to /${asked.linkTarget}, whose content is not known yet.`,
          { hint: 'Wait until every layer is listed, then try again.' },
        );
      source = { layer: link.layer, entry: target };
    }
    if (source.entry.kind !== EntryKind.File) {
      throw new LongshoreError(ErrorCode.InvalidArgument, `/${asked.path} is a ${source.entry.kind}, not a file with content.`);
    }
    const { body } = await openEntryBody(await this.#layerTar(source.layer), source.entry.ordinal, signal ? { signal } : {});
    const blob = await this.#options.toBlob(body, 'application/octet-stream');
    const name = asked.path.slice(asked.path.lastIndexOf('/') + 1) || 'file';
    return { blob, fileName: name, size: blob.size };
  }

  /** The merged filesystem as one tar (crane export semantics), streamed into a Blob. */
  async export(options: { signal?: AbortSignal; onProgress?: (p: ExportProgress) => void } = {}): Promise<FileResult> {
    await this.settled();
    const m = this.#merged;
    if (!m) throw new LongshoreError(ErrorCode.Internal, 'The merged filesystem is not ready.');
    if (m.partial) {
      throw new LongshoreError(
        ErrorCode.Format,
        'Some layer could not be read whole, so the merged filesystem is incomplete; it is not exported.',
        {
          hint: 'See the layer marked failed or limited for the reason.',
        },
      );
    }
    const plan = planExport(
      m.fs,
      this.#layers.map((l) => l.listing!.entries),
    );
    let last = 0;
    const stream = exportStream(plan, {
      ...(options.signal ? { signal: options.signal } : {}),
      openLayer: (layer) => this.#layerTar(layer),
      onProgress: (done) => {
        const now = Date.now();
        if (now - last < 100 && done.entries < plan.entries) return;
        last = now;
        options.onProgress?.({ entries: done.entries, bytes: done.bytes, totalEntries: plan.entries, totalBytes: plan.bytes });
      },
    });
    const blob = await this.#options.toBlob(stream, 'application/x-tar');
    return { blob, fileName: `${this.#options.name}-rootfs.tar`, size: blob.size };
  }
}
