// A whole pull as the worker runs it: resolve every manifest and config first, plan the archive
// (the compressed formats know every entry and its exact size from the descriptors; legacy learns
// an uncompressed layer's size once it is decompressed), open the destination, then fetch the
// layers into the store (in archive order) while the archive is written in that order: each blob
// as soon as it has been verified and stored, layers that finish early waiting in the store for
// their turn. Nothing unverified is written; any failure aborts the destination.
import { AbortedError, ErrorCode, LongshoreError } from '../core/errors.ts';
import { parseReference, type ImageReference } from '../core/reference.ts';
import { RegistryClient } from '../core/registry/client.ts';
import { RemoteSource } from '../core/image/remote.ts';
import {
  DEFAULT_PLATFORM,
  configPlatformLabel,
  formatPlatform,
  parsePlatform,
  selectablePlatforms,
  type Platform,
} from '../core/image/platform.ts';
import {
  chooseChild,
  everyLayer,
  pullLayers,
  refusedForeignLayers,
  resolveImage,
  resolveTree,
  DEFAULT_CONCURRENCY,
  DEFAULT_PARALLEL,
  type PullOptions,
} from '../core/pull.ts';
import { formatById, type Format } from '../core/formats/index.ts';
import { ociFormat } from '../core/formats/oci.ts';
import { blobOrder, blobUses, plannedSize, writeEntries } from '../core/formats/stream.ts';
import { proxyTransport } from '../core/http/transport.ts';
import { inspectTargetOf } from '../core/listing/target.ts';
import type { SinkImage } from '../core/formats/types.ts';
import type { Image } from '../core/image/model.ts';
import type { LayerPlan, PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import { observeRegistry, type RegistryNotice } from '../core/registry/rate-limit.ts';
import type { IdbBlobStore } from './idb-store.ts';
import type { LayerPool } from './layer-pool.ts';
import type { JournalEntry, PullJournal } from './journal.ts';
import type { Phase, PullOutcome, PullRequest, ResolveSummary, SaveProgress, WorkerConfig } from './protocol.ts';
import type { TarDestination } from './save/destination.ts';
import { openBlobDestination } from './save/blob-sink.ts';
import { openFileDestination } from './save/file-sink.ts';
import { openStreamDestination } from './save/stream-sink.ts';
import { saveLayoutFolder } from './save/folder-sink.ts';
import { archiveFileName } from './save/file-name.ts';
import type { SaveTarget } from './save/types.ts';
import { CachedSource } from '../core/image/cached-source.ts';
import { verifiedStore } from '../core/store/verified-read.ts';
import { recordAndEvict, type ImageCatalog } from './image-catalog.ts';

export { archiveFileName };

export interface JobContext {
  config: WorkerConfig;
  store: IdbBlobStore;
  fetch: typeof fetch;
  signal: AbortSignal;
  onPhase: (phase: Phase) => void;
  onProgress: (event: PullEvent) => void;
  /** Bytes written to the destination so far (called often; the caller throttles). */
  onSaveProgress?: (progress: SaveProgress) => void;
  /** A streamed download is ready to start: the page hands `port` to the service worker. */
  onSaveStream?: (port: MessagePort, fileName: string, size: number | undefined) => void;
  /** Where unfinished pulls are recorded (none: not recorded). */
  journal?: PullJournal;
  /** Layer workers to spread layers over; without one, layers are fetched in this worker. */
  pool?: LayerPool;
  /** The image catalog: offline answers from earlier pulls, and a record of each pull (image-catalog.ts). */
  catalog?: ImageCatalog;
  /** Rate limits and retry waits the registries report. */
  onNotice?: (notice: RegistryNotice) => void;
}

const JOURNAL_INTERVAL_MS = 1000;

/**
 * A picked file places each blob at its offset whenever it is ready, so following a blob while it
 * downloads (its bytes read back behind the hash cursor and sent through the pull worker into the
 * file, layer-tail.ts) only pays where copying it once verified would leave the file behind the last
 * byte. Below this size the verified blob is copied instead (the browser reads its stored file into
 * the picked one; no byte passes through JS). 400 MB through the 20 MB/s link, every blob followed
 * against none: Chromium 15.0-16.0 s of CPU against 11.1-12.0 s, the file 0.55-0.93 s after the last
 * byte against 0.37-0.55 s (the largest layer, 127 MB, copied in well under a second).
 */
export const FOLLOW_FROM_BYTES = 128 * 1024 * 1024;

function sourceFor(ctx: Pick<JobContext, 'config' | 'fetch' | 'onNotice'>, credentials?: Record<string, Credentials>): RemoteSource {
  const transport = proxyTransport((input, init) => ctx.fetch(input, init), ctx.config.proxyBase);
  const client = new RegistryClient({
    transport: ctx.onNotice ? observeRegistry(transport, ctx.onNotice) : transport,
    credentials: (host) => credentials?.[host],
  });
  return new RemoteSource(client);
}

export async function resolveJob(
  ctx: Pick<JobContext, 'config' | 'fetch' | 'signal' | 'onNotice' | 'catalog'>,
  reference: string,
  credentials?: Record<string, Credentials>,
): Promise<ResolveSummary> {
  const ref = parseReference(reference);
  const resolved = await (ctx.catalog ? new CachedSource(sourceFor(ctx, credentials), ctx.catalog) : sourceFor(ctx, credentials)).resolve(
    ref,
    ctx.signal,
  );
  if (resolved.kind === 'index') {
    return {
      kind: 'index',
      reference: resolved.reference.canonical,
      digest: resolved.digest,
      mediaType: resolved.mediaType,
      platforms: selectablePlatforms(resolved.manifest.manifests).map((c) => ({
        label: formatPlatform(c.platform),
        digest: c.descriptor.digest,
      })),
    };
  }
  const c = resolved.config;
  return {
    kind: 'image',
    reference: resolved.reference.canonical,
    digest: resolved.digest,
    mediaType: resolved.mediaType,
    platforms: [configPlatformLabel(c)].flatMap((label) => (label ? [{ label, digest: resolved.digest }] : [])),
  };
}

/** One name resolved: what the archive holds for it, and the image-shaped list of layers to fetch. */
interface Resolved {
  sink: SinkImage;
  layers: Image;
}

async function resolveAll(
  source: RemoteSource,
  refs: ImageReference[],
  request: PullRequest,
  platform: Platform,
  ctx: JobContext,
): Promise<Resolved[]> {
  const out: Resolved[] = [];
  for (const ref of refs) {
    ctx.onProgress({ type: 'resolving', reference: ref.canonical });
    if (request.allPlatforms) {
      const resolved = await source.resolve(ref, ctx.signal);
      if (resolved.kind === 'image') {
        out.push({ sink: { image: resolved, reference: ref }, layers: resolved });
      } else {
        const tree = await resolveTree(resolved, ctx.config.concurrency ?? DEFAULT_CONCURRENCY, ctx.signal);
        if (tree.children.length === 0) {
          throw new LongshoreError(ErrorCode.UnsupportedManifest, `The index ${ref.canonical} lists no image manifests.`, {
            hint: 'The name points at an index without images (perhaps artifacts only).',
          });
        }
        out.push({ sink: { image: chooseChild(tree, platform), reference: ref, index: tree }, layers: everyLayer(tree.children) });
      }
    } else {
      const { image } = await resolveImage(source, ref, platform, ctx.signal);
      out.push({ sink: { image, reference: ref }, layers: image });
    }
    const image = out.at(-1)!.sink.image;
    const c = image.config;
    const p = c.os && c.architecture ? formatPlatform({ os: c.os, architecture: c.architecture, variant: c.variant }) : undefined;
    ctx.onProgress({
      type: 'resolved',
      reference: image.reference.canonical,
      digest: image.digest,
      mediaType: image.mediaType,
      ...(p ? { platform: p } : {}),
    });
  }
  return out;
}

/**
 * `image` with its layers in the order the archive needs them (so the file can start early);
 * `original[i]` is the manifest position of reordered layer i.
 */
function inArchiveOrder(image: Image, order: Map<string, number>): { image: Image; original: number[] } {
  const rank = (i: number) => {
    const l = image.layers[i]!;
    return Math.min(order.get(l.descriptor.digest) ?? Infinity, l.diffId ? (order.get(l.diffId) ?? Infinity) : Infinity);
  };
  const original = image.layers.map((_, i) => i).sort((a, b) => rank(a) - rank(b) || a - b);
  const layers = original.map((o, i) => {
    const l = image.layers[o]!;
    return { descriptor: l.descriptor, index: i, diffId: l.diffId, open: (s?: AbortSignal) => l.open(s) };
  });
  return { image: { ...image, layers }, original };
}

/** Hands out the size of each blob once the pull has verified and stored it; fails them all if the pull stops. */
class BlobWaiter {
  readonly #settled = new Set<string>();
  /** Blobs a layer worker is fetching now (a writer may follow them: layer-tail.ts). */
  readonly #started = new Set<string>();
  readonly #waiting = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();
  #failure: unknown;

  constructor(
    private readonly store: IdbBlobStore,
    signal: AbortSignal,
  ) {
    signal.addEventListener(
      'abort',
      () => {
        this.#failure = signal.reason ?? new AbortedError();
        for (const list of this.#waiting.values()) for (const w of list) w.reject(this.#failure);
        this.#waiting.clear();
      },
      { once: true },
    );
  }

  settle(key: string): void {
    this.#settled.add(key);
    this.#wakeUp(key);
  }

  started(key: string): void {
    this.#started.add(key);
    this.#wakeUp(key);
  }

  #wakeUp(key: string): void {
    for (const w of this.#waiting.get(key) ?? []) w.resolve();
    this.#waiting.delete(key);
  }

  #change(key: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const list = this.#waiting.get(key) ?? [];
      list.push({ resolve, reject });
      this.#waiting.set(key, list);
    });
  }

  /** 'stored' once `key` is verified and stored, 'running' once a layer worker fetches it (whichever comes first). */
  readonly waitLive = async (key: string): Promise<'stored' | 'running'> => {
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#settled.has(key)) return 'stored';
      if (this.#started.has(key)) return 'running';
      await this.#change(key);
    }
  };

  readonly wait = async (key: string): Promise<number> => {
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#settled.has(key)) break;
      await this.#change(key);
    }
    const size = await this.store.size(key);
    if (size === undefined)
      throw new LongshoreError(ErrorCode.Store, `Blob ${key} is not in the browser cache after it was pulled.`, {
        hint: 'Pull again; the browser may have evicted storage.',
        retryable: true,
        data: { key },
      });
    return size;
  };
}

function checkRequest(request: PullRequest, format: Format | undefined): Format {
  if (request.references.length === 0)
    throw new LongshoreError(ErrorCode.InvalidArgument, 'No image name given.', { hint: 'Type an image name, e.g. alpine:latest.' });
  if (!format)
    throw new LongshoreError(ErrorCode.InvalidArgument, `Unknown output format "${request.format}".`, {
      hint: 'Choose one of the formats offered.',
    });
  if (request.references.length > 1 && !format.multiImage) {
    throw new LongshoreError(
      ErrorCode.InvalidArgument,
      `The ${format.label} format holds one image; ${request.references.length} names were given.`,
      {
        hint: 'Choose a format that holds several images (docker, legacy, tarball), or pull one name at a time.',
      },
    );
  }
  if (request.allPlatforms && !format.allPlatforms) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.label} format holds one platform of an image.`, {
      hint: 'Choose the oci format to keep every platform, or pick one platform.',
    });
  }
  return format;
}

async function openDestination(
  save: SaveTarget,
  ctx: JobContext,
  fileName: string,
  size: number | undefined,
  signal: AbortSignal,
): Promise<TarDestination> {
  switch (save.kind) {
    case 'file':
      return openFileDestination(save.handle, ctx.store);
    case 'stream': {
      if (!ctx.onSaveStream) throw new LongshoreError(ErrorCode.Internal, 'No page to start a streamed download.');
      const channel = new MessageChannel();
      const dest = openStreamDestination(channel.port1, { store: ctx.store, fileName, signal });
      ctx.onSaveStream(channel.port2, fileName, size);
      return dest;
    }
    case 'blob':
      return openBlobDestination(ctx.store, size);
    case 'folder':
      throw new LongshoreError(ErrorCode.Internal, 'A folder is not a tar destination.');
  }
}

export async function pullJob(ctx: JobContext, request: PullRequest): Promise<PullOutcome> {
  const save: SaveTarget = request.save ?? { kind: 'blob' };
  // A layout folder is the oci format unpacked; the format chosen for archives does not apply.
  const format = checkRequest(request, save.kind === 'folder' ? ociFormat : formatById(request.format));
  // The Blob offered at the end is made of the cached blobs: it needs the copy.
  const keepCopy = save.kind === 'blob' || request.keepCopy !== false;
  const refs = request.references.map((r) => parseReference(r));
  const platform = request.platform ? parsePlatform(request.platform) : DEFAULT_PLATFORM;
  const source = ctx.catalog ? new CachedSource(sourceFor(ctx, request.credentials), ctx.catalog) : sourceFor(ctx, request.credentials);
  const { store } = ctx;
  // Trust: a cached blob is re-hashed (once per pull) before the archive or the pull relies on it;
  // a damaged one is dropped, so the pull fetches it again.
  const checked = verifiedStore(ctx.store, { signal: ctx.signal });
  const fileName = save.kind === 'folder' ? save.handle.name : save.kind === 'file' ? save.handle.name : archiveFileName(refs);

  ctx.onPhase('resolving');
  const resolved = await resolveAll(source, refs, request, platform, ctx);

  // Plan: sizes of blobs stored already, else the descriptors'; an uncompressed layer still to be
  // made is sized when it is written.
  const descriptorSizes = new Map<string, number>();
  const stored = new Map<string, number>();
  for (const { layers } of resolved) {
    for (const l of layers.layers) {
      descriptorSizes.set(l.descriptor.digest, l.descriptor.size);
      for (const key of [l.descriptor.digest, l.diffId]) {
        if (key === undefined || stored.has(key)) continue;
        const size = await checked.size(key);
        if (size !== undefined) stored.set(key, size);
      }
    }
  }
  // Foreign layers whose source the proxy refuses stay out of the archive (or fail it) from the start.
  const refusedForeign = await refusedForeignLayers(
    source,
    resolved.map((r) => r.layers),
    ctx.signal,
  );
  const entries = await format.entries(
    resolved.map((r) => r.sink),
    {
      absent: (digest) => refusedForeign.has(digest),
      size: async (key) => {
        const size = stored.get(key) ?? descriptorSizes.get(key);
        if (size === undefined)
          throw new LongshoreError(ErrorCode.Store, `Blob ${key} is missing from the browser cache.`, { retryable: true });
        return size;
      },
      later: (key) => !stored.has(key) && !descriptorSizes.has(key),
    },
  );
  const size = plannedSize(entries);
  const order = blobOrder(entries);
  const uses = blobUses(entries);
  const previous = request.journalId ? await ctx.journal?.get(request.journalId).catch(() => undefined) : undefined;
  // Blobs in the cache before this pull stay; those it stores only to copy them go after their
  // last use (a resumed pull's own temporaries count as its own).
  const resumedTemporary = new Set(previous?.temporary ?? []);
  const preexisting = new Set(order.filter((k) => stored.has(k) && !resumedTemporary.has(k)));

  const stop = new AbortController();
  const onAbort = () => stop.abort(new AbortedError());
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  const waiter = new BlobWaiter(store, stop.signal);
  for (const key of stored.keys()) waiter.settle(key);

  // Journal: what was asked and how far it got, for Resume after a reload.
  const rows: LayerPlan[] = [];
  const done = new Map<number, number>();
  const journalEntry: JournalEntry | undefined = request.journalId
    ? {
        id: request.journalId,
        references: request.references,
        format: request.format,
        ...(request.platform ? { platform: request.platform } : {}),
        ...(request.allPlatforms ? { allPlatforms: true } : {}),
        keepCopy,
        save: save.kind,
        bytesDone: 0,
        bytesTotal: resolved.reduce((n, r) => n + r.layers.layers.reduce((m, l) => m + l.descriptor.size, 0), 0),
        startedAt: previous?.startedAt ?? Date.now(),
        updatedAt: Date.now(),
        temporary: [...resumedTemporary],
      }
    : undefined;
  let journalAt = 0;
  const journal = (force = false) => {
    if (!journalEntry || !ctx.journal) return;
    const now = Date.now();
    if (!force && now - journalAt < JOURNAL_INTERVAL_MS) return;
    journalAt = now;
    journalEntry.bytesDone = [...done.values()].reduce((a, b) => a + b, 0);
    journalEntry.updatedAt = now;
    void ctx.journal.put({ ...journalEntry, temporary: [...journalEntry.temporary] }).catch(() => undefined);
  };
  journal(true);

  let destination: TarDestination | undefined;
  let written = 0;
  // Called on every write: the caller throttles (the worker sends the page the latest 4 times a second).
  const reportSave = () => ctx.onSaveProgress?.({ written, total: size });
  const onCopied = async (key: string) => {
    const left = (uses.get(key) ?? 1) - 1;
    uses.set(key, left);
    if (keepCopy || left > 0 || preexisting.has(key)) return;
    // Its file goes as soon as the destination has read it (a streamed download reads it after
    // copy() returned), not when the pull ends: a one-off pull does not hold the image twice.
    await store.delete(key, { fileAfter: destination?.released?.() ?? Promise.resolve() });
    if (journalEntry) journalEntry.temporary = journalEntry.temporary.filter((k) => k !== key);
  };

  const orderIndex = new Map(order.map((k, i) => [k, i]));
  // Layers to unpack (legacy) go one per layer worker at a time: inflating is the bottleneck, and
  // six interleaved in two workers all finished at the end, leaving most of the archive to copy
  // after the last byte. In turn, each is written while the next inflate (1.5 GB on loopback: the
  // file 3.8-4.1 s after the last byte against 9.5-16 s, RSS +263-289 MB against +318-367 MB;
  // through a 20 MB/s-per-connection link about 7 % slower, with fewer connections).
  const layerLimit =
    format.needsUncompressed && ctx.pool ? Math.min(ctx.config.concurrency ?? DEFAULT_CONCURRENCY, ctx.pool.size) : ctx.config.concurrency;
  const pulling = async () => {
    ctx.onPhase('downloading');
    for (const { layers } of resolved) {
      const offset = rows.length;
      const { image, original } = inArchiveOrder(layers, orderIndex);
      const keysOf = (i: number) => {
        const l = layers.layers[original[i]!]!;
        return l.diffId ? [l.descriptor.digest, l.diffId] : [l.descriptor.digest];
      };
      const options: PullOptions = {
        store: checked,
        platform,
        signal: stop.signal,
        uncompressed: format.needsUncompressed,
        // The archive needs one copy of each layer; writing the other to IndexedDB too cost legacy
        // pulls a third more storage work (and memory) for a cache only other formats would use.
        keepCompressed: !format.needsUncompressed,
        ...(layerLimit ? { concurrency: layerLimit } : {}),
        // Big blobs as concurrent ranges here too when there is no layer pool (as the layer workers do).
        parallel: { ...DEFAULT_PARALLEL, ...ctx.config.parallel },
        ...(ctx.pool
          ? {
              layerRunner: (job, onBytes, signal) => {
                const running = ctx.pool!.run(job, ctx.config, request.credentials, onBytes, signal, source.client.shareAuth());
                // The job is with its layer worker now: the writer may follow it.
                waiter.started(job.descriptor.digest);
                return running;
              },
            }
          : {}),
        onProgress: (event) => {
          if (event.type === 'plan') {
            const mapped = event.layers.map((l) => ({ ...l, index: offset + original[l.index]! })).sort((a, b) => a.index - b.index);
            rows.splice(offset, rows.length - offset, ...mapped);
            ctx.onProgress({ type: 'plan', layers: rows.slice(), totalBytes: rows.reduce((n, l) => n + l.size, 0) });
          } else if (event.type === 'layer') {
            const index = offset + original[event.index]!;
            done.set(index, event.done);
            if (event.state === 'done' || event.state === 'cached') {
              for (const key of keysOf(event.index)) {
                if (event.state === 'done' && !keepCopy && !preexisting.has(key) && journalEntry && !journalEntry.temporary.includes(key))
                  journalEntry.temporary.push(key);
                waiter.settle(key);
              }
              journal(true);
            } else journal();
            ctx.onProgress({ ...event, index });
          } else {
            ctx.onProgress(event);
          }
        },
      };
      await pullLayers(image, options);
    }
    ctx.onPhase('assembling');
  };

  const writing = async () => {
    if (save.kind === 'folder') {
      written = await saveLayoutFolder(save.handle, entries, waiter.wait, {
        store,
        signal: stop.signal,
        onCopied,
        onBytes: (n) => {
          written += n;
          reportSave();
        },
      });
      return;
    }
    destination = await openDestination(save, ctx, fileName, size, stop.signal);
    const dest = destination;
    const pool = ctx.pool;
    // A picked file of planned size takes each blob at its place as it comes: the headers go in at
    // once, and every blob (followed while it downloads, or copied once stored) in whatever order the
    // blobs finish, so a small layer done early is not left to wait behind a big one.
    const place = dest.positional && dest.seek && size !== undefined ? { ...dest.positional, seek: dest.seek.bind(dest) } : undefined;
    if (place) await place.reserve(size!);
    // In archive order (a download, legacy) every blob is followed: the ones after it wait for it.
    const followFrom = place ? (ctx.config.followFrom ?? FOLLOW_FROM_BYTES) : 0;
    /**
     * Write blob `key` (`n` bytes, starting at byte `at` of the archive) behind its hash cursor while
     * a layer worker fetches it (layer-tail.ts), then the rest from the store once it is verified.
     * Only a picked file or a streamed download: both become final only when the pull succeeded (a
     * Blob is composed at the end anyway).
     */
    const follow = async (key: string, n: number, at: number): Promise<void> => {
      /** Where the bytes in order have reached in the blob (past the pieces they skipped). */
      let frontier = 0;
      /** Bytes written from the tail, in order / as pieces (ranges complete in a layer worker's spill, copied by the browser). */
      let streamed = 0;
      let placed = 0;
      const pieces: { start: number; end: number }[] = [];
      /** Piece writes under way: all are awaited before the blob counts as written. */
      const pieceWrites: Promise<void>[] = [];
      const tooLong = () => new LongshoreError(ErrorCode.SizeMismatch, `Blob ${key} came out longer than the ${n} bytes planned.`);
      if (pool && n >= followFrom && (await waiter.waitLive(key)) === 'running') {
        const tail = pool.follow(key, `blob ${key}`, stop.signal, place !== undefined);
        if (tail) {
          try {
            for (;;) {
              const m = await tail.next();
              if ('verified' in m) {
                await Promise.all(pieceWrites);
                frontier = Math.max(frontier, m.verified);
                break;
              }
              if ('piece' in m) {
                const { id, start, blob } = m.piece;
                if (!place || start + blob.size > n) throw tooLong();
                pieces.push({ start, end: start + blob.size });
                const write = place.writeAt(at + start, blob).then(() => {
                  placed += blob.size;
                  written += blob.size;
                  reportSave();
                });
                // The spill may be written again once its bytes are in the file (or the write failed).
                const release = () => tail.pieceDone(id);
                write.then(release, release);
                pieceWrites.push(write);
                continue;
              }
              const length = m.bytes.byteLength;
              if (m.at + length > n) throw tooLong();
              if (!place && m.at !== frontier) throw new LongshoreError(ErrorCode.Internal, `The live copy of blob ${key} skipped bytes.`);
              await (place ? place.writeAt(at + m.at, m.bytes) : dest.write(m.bytes));
              tail.taken(m.bytes, length);
              frontier = m.at + length;
              streamed += length;
              written += length;
              reportSave();
            }
          } catch (err) {
            tail.close();
            await Promise.allSettled(pieceWrites);
            if (stop.signal.aborted) throw err;
            // The layer's own failure (reported by the pull) comes first; a blob that was verified
            // after all is only a problem if part of it was written from bytes since dropped.
            await waiter.wait(key);
            if (streamed > 0 || placed > 0) {
              // Verified after all, but part of it went out from bytes since dropped (the blob
              // started over): a picked file takes them back (written again at their place); a
              // download cannot.
              if (!place) {
                if (!dest.seek) throw err;
                await dest.seek(at);
              }
              written -= streamed + placed;
            }
            frontier = 0;
            pieces.length = 0;
          }
        }
      }
      const stored = await waiter.wait(key);
      if (stored !== n)
        throw new LongshoreError(ErrorCode.Store, `The stored blob ${key} is ${stored} bytes, but the archive planned ${n}.`, {
          data: { key, expected: n, actual: stored },
        });
      if (frontier < n) {
        await (place ? place.copyAt(at + frontier, key, n, frontier) : dest.copy(key, n, frontier));
        // Pieces past the frontier were written again by the copy: counted once.
        const again = pieces.reduce((sum, p) => sum + Math.max(0, Math.min(p.end, n) - Math.max(p.start, frontier)), 0);
        written += n - frontier - again;
        reportSave();
      }
    };
    const appending = {
      write: async (bytes: Uint8Array) => {
        await dest.write(bytes);
        written += bytes.byteLength;
        reportSave();
      },
      copy: async (key: string, n: number) => {
        await dest.copy(key, n);
        written += n;
        reportSave();
      },
    };
    if (place) {
      // writeEntries writes the headers and hands over each blob with its place; the blobs are
      // written concurrently (what is stored at once, what downloads as it comes).
      const placing: Promise<void>[] = [];
      const placeBlob = async (key: string, n: number, at: number) => {
        // The entries after it are written past it.
        await place.seek(at + n);
        const placed = follow(key, n, at).then(() => onCopied(key));
        // The first failure stops the pull at once (not only when every blob before it is placed).
        placed.catch((err: unknown) => {
          if (!stop.signal.aborted) stop.abort(err);
        });
        placing.push(placed);
      };
      await writeEntries(entries, { write: appending.write, copy: placeBlob, follow: placeBlob }, waiter.wait, { signal: stop.signal });
      await Promise.all(placing);
      return;
    }
    await writeEntries(
      entries,
      { ...appending, ...(pool && (save.kind === 'file' || save.kind === 'stream') ? { follow } : {}) },
      waiter.wait,
      { signal: stop.signal, onCopied },
    );
  };

  // Either side failing stops the other; the first failure is the one reported.
  const guard = (p: Promise<void>) =>
    p.catch((err: unknown) => {
      if (!stop.signal.aborted) stop.abort(err);
      throw err;
    });
  let blob: Blob | undefined;
  try {
    const settled = await Promise.allSettled([guard(pulling()), guard(writing())]);
    if (settled.some((s) => s.status === 'rejected')) throw ctx.signal.aborted ? new AbortedError() : stop.signal.reason;
    blob = await destination?.close();
    reportSave();
  } catch (err) {
    if (!stop.signal.aborted) stop.abort(err);
    await destination?.abort(err);
    const e = ctx.signal.aborted ? new AbortedError() : LongshoreError.from(err);
    await finishJournal(ctx, journalEntry, e, keepCopy);
    throw e;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
  }
  await finishJournal(ctx, journalEntry, undefined, keepCopy);
  if (ctx.catalog && source instanceof CachedSource && keepCopy) {
    const images = resolved.map((r, k) => ({
      typed: request.references[k]!,
      image: r.sink.image,
      ...(r.sink.index ? { index: r.sink.index } : {}),
    }));
    // The archive is written; a catalog that cannot be written only costs offline use.
    await recordAndEvict(ctx.catalog, source.seen, images, ctx.store, globalThis.navigator?.storage).catch(() => []);
  }

  const first = resolved[0]!.sink.image;
  const c = first.config;
  return {
    ...(blob ? { blob } : {}),
    saved: { kind: save.kind, name: fileName, bytes: written },
    fileName,
    size: written,
    format: save.kind === 'folder' ? ociFormat.id : format.id,
    reference: resolved.map((r) => r.sink.image.reference.canonical).join(' '),
    digest: first.digest,
    platform: configPlatformLabel(c),
    ...(keepCopy ? { inspect: inspectTargetOf(first) } : {}),
    ...(source instanceof CachedSource && source.seen.notes.length ? { cache: source.seen.notes } : {}),
  };
}

/** A pull that ended: done or cancelled, its record goes (with temporaries); failed, it stays for Resume. */
async function finishJournal(
  ctx: JobContext,
  entry: JournalEntry | undefined,
  error: LongshoreError | undefined,
  keepCopy: boolean,
): Promise<void> {
  if (!entry || !ctx.journal) return;
  try {
    if (error && error.code !== ErrorCode.Aborted) {
      await ctx.journal.put({ ...entry, failed: error.message, updatedAt: Date.now() });
      return;
    }
    if (!keepCopy) for (const key of entry.temporary) await ctx.store.delete(key).catch(() => undefined);
    await ctx.journal.delete(entry.id);
  } catch {
    // The journal is a convenience; a pull never fails because of it.
  }
}
