// crane pull's first half: image name → verified manifest, config and layer blobs in a BlobStore.
// Layers are fetched in parallel (bounded), verified while streaming, and kept only once verified;
// blobs already in the store are not fetched again. With `uncompressed`, each layer is also
// decompressed on the fly and kept under its diff_id after that digest is verified too (zstd
// through fzstd unless the caller brings its own decoder). `pullIndex` does the same for every
// platform of an index at once.
import { AbortedError, ErrorCode, LongshoreError, throwIfAborted } from './errors.ts';
import { decompress } from './compression.ts';
import { zstdDecompressStream } from './zstd.ts';
import { verifyingStream } from './digest.ts';
import { fetchBlob, type BlobSender, type ParallelOptions } from './http/blob-fetch.ts';
import type { BlobSink } from './store/blob-store.ts';
import type { ImageReference } from './reference.ts';
import type { Descriptor, Image, ImageIndex, Layer } from './image/model.ts';
import { isIndexMediaType } from './image/media-types.ts';
import { foreignLayerSkipped, foreignUrls } from './image/foreign.ts';
import { DEFAULT_PLATFORM, configPlatformLabel, isAttestation, matchPlatform, type Platform } from './image/platform.ts';
import type { RemoteSource } from './image/remote.ts';
import type { BlobStore } from './store/blob-store.ts';
import type { LayerPlan, PullEvent } from './progress.ts';

export interface PullOptions {
  store: BlobStore;
  platform?: Platform;
  /** Layers fetched at once (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (event: PullEvent) => void;
  /**
   * Keep every compressed layer uncompressed under its diff_id too, after verifying it (needed by
   * the legacy docker-save format); the compressed blob is kept as well unless `keepCompressed`
   * is false.
   */
  uncompressed?: boolean;
  /**
   * With `uncompressed`: also keep the compressed blobs (default true). False keeps only what a
   * format of uncompressed layers needs: the compressed bytes are still verified against their
   * digest as they stream, but not stored, which saves writing them (and a later pull for a
   * compressed format fetches them again). A layer that is not decompressed (served
   * uncompressed, or without a diff_id) is kept under its digest either way.
   */
  keepCompressed?: boolean;
  /**
   * A zstd decoder, for `uncompressed` with zstd layers (default: fzstd, see zstd.ts); `null` for
   * none, so zstd layers fail with FORMAT (what happened before a default existed).
   */
  zstd?: (() => TransformStream<Uint8Array, Uint8Array>) | null;
  /**
   * Big blobs as several concurrent range requests (parallel.ts); default one stream per blob.
   * Needs a store with `createSpill` to hold ranges ahead of the hash cursor; layers that are
   * decompressed as they arrive (legacy) always take one stream.
   */
  parallel?: Omit<ParallelOptions, 'spill'>;
  /**
   * How to reach a blob of the registry with single requests (resume, retries and ranges are the
   * fetch engine's); `pull` and `pullIndex` set it from their source. Without it, layers stream
   * through `Layer.open` with no resume.
   */
  sender?: (reference: ImageReference, descriptor: Descriptor, label: string) => BlobSender;
  /**
   * Runs one layer's fetch → verify → store elsewhere (the browser spreads layers over a pool of
   * Workers so hashing and decompression use every core); default: here, with `storeLayer`.
   * Retries and resume happen where the layer is fetched (blob-fetch.ts); progress and
   * cancellation stay with the caller of `pull`.
   */
  layerRunner?: (job: LayerJob, onBytes: (n: number) => void, signal: AbortSignal) => Promise<void>;
}

/** One layer to fetch and keep: everything a runner in another thread needs to do it. */
export interface LayerJob {
  /** The image's reference pinned by digest; the blob is fetched from its repository. */
  reference: string;
  descriptor: Descriptor;
  diffId: string | undefined;
  label: string;
  needCompressed: boolean;
  needUncompressed: boolean;
  /**
   * The compressed blob is in the store already (verified when it was kept) and only the
   * uncompressed copy is missing: decompress it from there instead of fetching it again.
   */
  fromStore?: boolean;
}

export interface PullResult {
  image: Image;
  /** The index the image was chosen from, if the name pointed at one. */
  index?: ImageIndex;
}

/**
 * Layers fetched at once. 6, as skopeo (containers/image) fetches and as many connections as a
 * browser opens to one HTTP/1.1 host: on a link capping each connection (20 MB/s, 40 ms) the 400 MB
 * preset came in 7.0–7.5 s against 8.1–9.1 s with 4 (alternated runs); on loopback no difference.
 */
export const DEFAULT_CONCURRENCY = 6;

/**
 * What the browser uses for big blobs unless configured (WorkerConfig.parallel): blobs of 64 MiB
 * and more as 4 concurrent ranges. Measured on loopback through a relay capping each connection
 * (README, "Parallel ranges"): 4 ranges gave most of the gain; smaller blobs gain too little for
 * the extra requests and the spilled bytes' second pass through storage.
 */
export const DEFAULT_PARALLEL = { connections: 4, threshold: 64 * 1024 * 1024 };

/** Resolve `ref` to one image (choosing a platform in an index). */
export async function resolveImage(
  source: RemoteSource,
  ref: ImageReference,
  platform: Platform = DEFAULT_PLATFORM,
  signal?: AbortSignal,
): Promise<PullResult> {
  const resolved = await source.resolve(ref, signal);
  if (resolved.kind === 'image') return { image: resolved };
  return { image: await resolved.image(platform, signal), index: resolved };
}

export async function pull(source: RemoteSource, ref: ImageReference, options: PullOptions): Promise<PullResult> {
  const { signal } = options;
  const emit = options.onProgress ?? (() => undefined);
  emit({ type: 'resolving', reference: ref.canonical });
  const result = await resolveImage(source, ref, options.platform, signal);
  const { image } = result;
  const platform = configPlatformLabel(image.config);
  emit({
    type: 'resolved',
    reference: image.reference.canonical,
    digest: image.digest,
    mediaType: image.mediaType,
    ...(platform ? { platform } : {}),
  });
  await pullLayers(image, withSender(options, source), emit);
  return result;
}

/** An index with everything under it resolved: what a format with `allPlatforms` writes. */
export interface PulledIndex {
  /** The index the name points at, its bytes as the registry served them. */
  index: ImageIndex;
  /** Every image manifest it reaches, each once, in index order (nested indexes walked where they stand); attestations included. */
  children: Image[];
  /** Indexes nested inside `index`, each once (rare: most indexes list image manifests only). */
  nested: ImageIndex[];
}

export interface PullIndexResult {
  /** The child for `options.platform` (if the index has none, its first runnable child); for a name that points at one image, that image. */
  image: Image;
  /** Absent when the name points at a single image. */
  index?: PulledIndex;
}

/**
 * Every platform of `ref`: the index, every child manifest and config (verified by digest and
 * size), and every distinct layer of every child in the store, fetched as `pull` fetches (bounded
 * concurrency, verified, cached ones skipped), with one progress plan over all of them. A name that
 * points at a single image pulls that image. Configs and manifests stay in the returned model (as
 * with `pull`); only layers go to the store.
 */
export async function pullIndex(source: RemoteSource, ref: ImageReference, options: PullOptions): Promise<PullIndexResult> {
  const { signal } = options;
  const emit = options.onProgress ?? (() => undefined);
  emit({ type: 'resolving', reference: ref.canonical });
  const resolved = await source.resolve(ref, signal);
  if (resolved.kind === 'image') {
    const c = resolved.config;
    const platform = configPlatformLabel(c);
    emit({
      type: 'resolved',
      reference: resolved.reference.canonical,
      digest: resolved.digest,
      mediaType: resolved.mediaType,
      ...(platform ? { platform } : {}),
    });
    await pullLayers(resolved, withSender(options, source), emit);
    return { image: resolved };
  }
  const tree = await resolveTree(resolved, options.concurrency ?? DEFAULT_CONCURRENCY, signal);
  if (tree.children.length === 0) {
    throw new LongshoreError(ErrorCode.UnsupportedManifest, `The index ${ref.canonical} lists no image manifests.`, {
      hint: 'The name points at an index without images (perhaps artifacts only).',
    });
  }
  emit({ type: 'resolved', reference: resolved.reference.canonical, digest: resolved.digest, mediaType: resolved.mediaType });
  await pullLayers(everyLayer(tree.children), withSender(options, source), emit);
  return { image: chooseChild(tree, options.platform ?? DEFAULT_PLATFORM), index: tree };
}

export async function resolveTree(root: ImageIndex, limit: number, signal: AbortSignal | undefined): Promise<PulledIndex> {
  const children: Image[] = [];
  const nested: ImageIndex[] = [];
  const seen = new Set<string>([root.digest]);
  const walk = async (index: ImageIndex): Promise<void> => {
    const todo = index.manifest.manifests.filter((d) => !seen.has(d.digest) && seen.add(d.digest));
    const got: (Image | ImageIndex)[] = [];
    await mapLimit(
      todo.map((d, i) => [d, i] as const),
      limit,
      signal,
      async ([d, i]) => {
        const child = await index.child(d, signal);
        // The digest was checked by the client; the descriptor's size must match too (image-spec descriptor.md).
        if (child.manifestBytes.byteLength !== d.size) {
          throw new LongshoreError(
            ErrorCode.SizeMismatch,
            `The manifest ${d.digest} in ${index.reference.canonical} is ${child.manifestBytes.byteLength} bytes, but the index says ${d.size}.`,
            {
              hint: 'The index and the manifest it lists disagree. Nothing was kept.',
              data: { digest: d.digest, expected: d.size, actual: child.manifestBytes.byteLength },
            },
          );
        }
        got[i] = child;
      },
    );
    for (const child of got) {
      if (child.kind === 'image') children.push(child);
      else {
        nested.push(child);
        await walk(child);
      }
    }
  };
  await walk(root);
  return { index: root, children, nested };
}

/**
 * The child for `platform`, following nested indexes (also those without a platform of their own,
 * which containerd's matcher would take for linux/amd64); else the first runnable child; else the first.
 */
export function chooseChild(tree: PulledIndex, platform: Platform): Image {
  const images = new Map(tree.children.map((c) => [c.digest, c]));
  const indexes = new Map(tree.nested.map((i) => [i.digest, i]));
  const pick = (index: ImageIndex): Image | undefined => {
    let d: Descriptor | undefined;
    try {
      d = matchPlatform(index.manifest.manifests, platform);
    } catch (err) {
      if (LongshoreError.from(err).code !== ErrorCode.NoMatchingPlatform) throw err;
    }
    const matched = d && (isIndexMediaType(d.mediaType) ? indexes.has(d.digest) && pick(indexes.get(d.digest)!) : images.get(d.digest));
    if (matched) return matched;
    for (const child of index.manifest.manifests) {
      const nested = isIndexMediaType(child.mediaType) && child.digest !== d?.digest ? indexes.get(child.digest) : undefined;
      const found = nested && pick(nested);
      if (found) return found;
    }
    return undefined;
  };
  return pick(tree.index) ?? tree.children.find((c) => !isAttestation(c.descriptor)) ?? tree.children[0]!;
}

/** One image-shaped job over every distinct layer of `children`, so one plan and one bounded pool cover them all. */
export function everyLayer(children: Image[]): Image {
  const seen = new Set<string>();
  const layers: Layer[] = [];
  for (const child of children) {
    for (const l of child.layers) {
      if (seen.has(l.descriptor.digest)) continue;
      seen.add(l.descriptor.digest);
      layers.push({ descriptor: l.descriptor, index: layers.length, diffId: l.diffId, open: (s?: AbortSignal) => l.open(s) });
    }
  }
  return { ...children[0]!, layers };
}

/** Which store keys a layer needs, and whether they are all there already. */
async function layerPlan(
  layer: Layer,
  store: BlobStore,
  uncompressed: boolean,
  keepCompressed: boolean,
): Promise<LayerPlan & { needCompressed: boolean; needUncompressed: boolean; hasCompressed: boolean }> {
  const d = layer.descriptor;
  const decompressed = uncompressed && layer.diffId !== undefined && layer.diffId !== d.digest;
  const needUncompressed = decompressed && !(await store.has(layer.diffId!));
  const hasCompressed = await store.has(d.digest);
  const needCompressed = (!decompressed || keepCompressed) && !hasCompressed;
  return {
    index: layer.index,
    digest: d.digest,
    mediaType: d.mediaType,
    size: d.size,
    cached: !needCompressed && !needUncompressed,
    needCompressed,
    needUncompressed,
    hasCompressed,
  };
}

/**
 * The foreign layers of `images` whose source the proxy refuses (403 PROXY_DENIED to a one-byte
 * range request), by digest: known before an archive is planned, so a streamed archive leaves
 * them out from the start (docker, oci) or the pull fails at once (formats that need the bytes).
 * Any other answer (a host that is down, say) is left to the pull itself.
 */
export async function refusedForeignLayers(source: RemoteSource, images: readonly Image[], signal?: AbortSignal): Promise<Set<string>> {
  const refused = new Set<string>();
  const client = (source as Partial<RemoteSource>).client;
  if (!client) return refused;
  for (const image of images) {
    for (const layer of image.layers) {
      const d = layer.descriptor;
      if (foreignUrls(d).length === 0 || refused.has(d.digest)) continue;
      const sender = client.blobSender(image.reference, d, `layer ${layer.index + 1}`);
      let response: Response;
      try {
        response = await sender.send({ start: 0, end: 0 }, signal);
      } catch (err) {
        if (signal?.aborted) throw new AbortedError();
        continue;
      }
      if (response.ok) {
        await response.body?.cancel().catch(() => undefined);
        continue;
      }
      const error = await sender.fail(response);
      if (error.code === ErrorCode.ProxyDenied) refused.add(d.digest);
    }
  }
  return refused;
}

/** Blobs through the source's registry client, when it has one (a synthetic source streams `Layer.open`). */
function withSender(options: PullOptions, source: RemoteSource): PullOptions {
  const client = (source as Partial<RemoteSource>).client;
  if (options.sender || !client) return options;
  return { ...options, sender: (ref, d, label) => client.blobSender(ref, d, label) };
}

/** Opens a stored blob for `storeLayer`, or says clearly that it went missing. */
export function storedBlobOpener(store: BlobStore, digest: string, label: string): () => Promise<ReadableStream<Uint8Array>> {
  return async () => {
    const stream = await store.open(digest);
    if (!stream)
      throw new LongshoreError(ErrorCode.Store, `The ${label} (${digest}) is no longer in the store.`, {
        hint: 'It will be fetched from the registry.',
        retryable: true,
        data: { digest },
      });
    return stream;
  };
}

export async function pullLayers(
  image: Image,
  outer: PullOptions,
  emit: (e: PullEvent) => void = outer.onProgress ?? (() => undefined),
): Promise<void> {
  // One failed layer stops the others: their partial bytes are discarded by the store contract.
  const stop = new AbortController();
  const onOuterAbort = () => stop.abort();
  outer.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (outer.signal?.aborted) stop.abort();
  const options: PullOptions = { ...outer, signal: stop.signal };
  try {
    await pullLayersWith(image, options, emit, outer.signal, stop);
  } finally {
    outer.signal?.removeEventListener('abort', onOuterAbort);
  }
}

async function pullLayersWith(
  image: Image,
  options: PullOptions,
  emit: (e: PullEvent) => void,
  outerSignal: AbortSignal | undefined,
  stop: AbortController,
): Promise<void> {
  const { store, signal } = options;
  const uncompressed = options.uncompressed ?? false;
  const keepCompressed = options.keepCompressed ?? true;
  const plans = await Promise.all(image.layers.map((l) => layerPlan(l, store, uncompressed, keepCompressed)));
  emit({
    type: 'plan',
    layers: plans.map(({ needCompressed: _a, needUncompressed: _b, hasCompressed: _c, ...p }) => p),
    totalBytes: plans.reduce((n, p) => n + p.size, 0),
  });
  for (const p of plans) {
    emit({
      type: 'layer',
      index: p.index,
      digest: p.digest,
      state: p.cached ? 'cached' : 'waiting',
      done: p.cached ? p.size : 0,
      total: p.size,
    });
  }
  const todo = plans.filter((p) => !p.cached);
  await mapLimit(todo, options.concurrency ?? DEFAULT_CONCURRENCY, signal, async (p) => {
    const layer = image.layers[p.index]!;
    // A compressed blob already kept (say, by a docker-format pull) is decompressed from the
    // store; if that fails in any way, the layer is fetched from the registry as usual.
    let fromStore = p.needUncompressed && p.hasCompressed;
    for (;;) {
      let done = 0;
      try {
        emit({ type: 'layer', index: p.index, digest: p.digest, state: 'downloading', done: 0, total: p.size });
        const onBytes = (n: number) => {
          done += n;
          emit({ type: 'layer', index: p.index, digest: p.digest, state: 'downloading', done, total: p.size });
        };
        const job: LayerJob = {
          reference: image.reference.canonical,
          descriptor: layer.descriptor,
          diffId: layer.diffId,
          label: `layer ${layer.index + 1}/${image.layers.length}`,
          needCompressed: p.needCompressed,
          needUncompressed: p.needUncompressed,
          ...(fromStore ? { fromStore } : {}),
        };
        if (options.layerRunner) await options.layerRunner(job, onBytes, signal!);
        else {
          const from: LayerSource = fromStore
            ? { open: storedBlobOpener(store, job.descriptor.digest, job.label) }
            : options.sender
              ? options.sender(image.reference, layer.descriptor, job.label)
              : { open: (sig) => layer.open(sig) };
          await storeLayer(from, job, options, onBytes);
        }
        emit({ type: 'layer', index: p.index, digest: p.digest, state: 'done', done: p.size, total: p.size });
        return;
      } catch (err) {
        const e = LongshoreError.from(err);
        if (outerSignal?.aborted) throw new AbortedError();
        if (signal?.aborted) throw e; // another layer failed first; its error is the one reported
        if (fromStore) {
          fromStore = false;
          continue;
        }
        if (foreignUrls(layer.descriptor).length > 0 && e.code === ErrorCode.ProxyDenied) {
          // Its source is not allowed: the pull goes on; formats that keep descriptors only
          // (docker, oci) write it as such, the others refuse when planning (formats/entries.ts).
          const skipped = foreignLayerSkipped(layer.descriptor, `layer ${layer.index + 1}`, e.message);
          emit({ type: 'layer', index: p.index, digest: p.digest, state: 'skipped', done: 0, total: p.size });
          emit({
            type: 'warning',
            code: skipped.code,
            message: skipped.message,
            ...(skipped.hint ? { hint: skipped.hint } : {}),
            digest: p.digest,
          });
          return;
        }
        // No retry here: the fetch engine retried (and resumed) already, within its budget.
        emit({ type: 'layer', index: p.index, digest: p.digest, state: 'failed', done, total: p.size });
        stop.abort();
        throw e;
      }
    }
  });
}

/** Where a layer's bytes come from: the registry (resumable single requests) or a verified stream. */
export type LayerSource = BlobSender | { open: (signal?: AbortSignal) => Promise<ReadableStream<Uint8Array>> };

/**
 * Fetch one layer and keep what the job asks for: the blob under its digest, and/or its
 * decompressed bytes under the diff_id once verified. From the registry, the compressed bytes go
 * through the resumable fetch engine into the store's partial for that digest (continuing a
 * download an earlier pull left unfinished); the diff_id copy is written as they pass.
 */
export async function storeLayer(
  from: LayerSource,
  job: Pick<LayerJob, 'descriptor' | 'diffId' | 'label' | 'needCompressed' | 'needUncompressed'>,
  options: Pick<PullOptions, 'store' | 'signal' | 'zstd' | 'parallel'>,
  onBytes: (n: number) => void,
): Promise<void> {
  if ('open' in from) return storeStream(await from.open(options.signal), job, options, onBytes);
  const { store, signal } = options;
  const d = job.descriptor;
  const expected = { digest: d.digest, size: d.size, label: job.label };
  // Spills belong to the blob's key: the store's sweep leaves them alone while this download holds it.
  const parallel = options.parallel && store.createSpill ? { ...options.parallel, spill: () => store.createSpill!(d.digest) } : undefined;
  const fetchOptions = { ...(signal ? { signal } : {}), onBytes, ...(parallel ? { parallel } : {}) };
  if (!job.needUncompressed) {
    const sink = store.openPartial ? await store.openPartial(d.digest, d.size, signal) : streamSink((s) => store.put(d.digest, s, signal));
    // Another pull (a tab, a layer worker) may have finished it while this one waited for the
    // partial; a prefix still kept of it is of no use any more.
    if (store.openPartial && (await store.has(d.digest))) {
      await sink.close(false);
      onBytes(d.size);
      return;
    }
    await fetchBlob(from, sink, expected, fetchOptions);
    return;
  }
  // The decompressor must see the blob from byte 0, so a stored partial is not resumed here; a
  // break within this pull still continues where it stopped (the sink keeps its place).
  const branches = () => {
    const list = [streamSink((s) => decompressInto(s, job, options))];
    if (job.needCompressed) list.push(streamSink((s) => store.put(d.digest, s, signal)));
    return list;
  };
  const { parallel: _oneStream, ...inOrder } = fetchOptions;
  await fetchBlob(from, teeSink(branches), expected, inOrder);
}

/** The blob's bytes decompressed and kept under the job's diff_id once that digest matched. */
async function decompressInto(
  stream: ReadableStream<Uint8Array>,
  job: Pick<LayerJob, 'diffId' | 'label'>,
  options: Pick<PullOptions, 'store' | 'signal' | 'zstd'>,
): Promise<number> {
  const zstd = options.zstd === null ? undefined : (options.zstd ?? zstdDecompressStream);
  const { stream: plain } = await decompress(stream, zstd ? { zstd } : {});
  return options.store.put(
    job.diffId!,
    plain.pipeThrough(verifyingStream({ digest: job.diffId!, label: `uncompressed ${job.label}` })),
    options.signal,
  );
}

/**
 * A sink feeding a consumer of streams (store.put, a decompressor): what was written is kept only
 * if the consumer finishes cleanly after commit(); reset() starts a new consumer from byte 0.
 */
export function streamSink(consume: (stream: ReadableStream<Uint8Array>) => Promise<unknown>): BlobSink {
  let writer!: WritableStreamDefaultWriter<Uint8Array>;
  let consumed!: Promise<unknown>;
  let written = 0;
  const begin = () => {
    const pipe = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 4 }, { highWaterMark: 4 });
    writer = pipe.writable.getWriter();
    consumed = consume(pipe.readable);
    consumed.catch(() => undefined);
    written = 0;
  };
  const stop = async (reason: unknown) => {
    await writer.abort(reason).catch(() => undefined);
    await consumed.catch(() => undefined);
  };
  begin();
  return {
    get offset() {
      return written;
    },
    state: undefined,
    async write(chunk) {
      // The consumer's own failure (a diff_id mismatch, a full disk) is the one to report.
      await Promise.race([writer.ready.catch(() => consumed), consumed.then(() => undefined)]);
      written += chunk.byteLength;
      void writer.write(chunk).catch(() => undefined);
      await Promise.race([writer.ready.catch(() => consumed), consumed.then(() => undefined)]);
    },
    async reset() {
      await stop(new AbortedError('restarted from byte 0'));
      begin();
    },
    async commit() {
      await writer.close().catch(() => undefined);
      await consumed;
    },
    async close() {
      await stop(new AbortedError());
    },
  };
}

/** One sink writing to several (the compressed copy and the decompressed one); all commit or none. */
function teeSink(make: () => BlobSink[]): BlobSink {
  let sinks = make();
  const all = async (f: (s: BlobSink) => Promise<void>) => {
    const settled = await Promise.allSettled(sinks.map(f));
    const failures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => LongshoreError.from(s.reason));
    // Prefer the error that says what went wrong over the cancellations it caused elsewhere.
    if (failures.length) throw failures.find((e) => e.code !== ErrorCode.Internal && e.code !== ErrorCode.Aborted) ?? failures[0]!;
  };
  return {
    get offset() {
      return sinks[0]!.offset;
    },
    state: undefined,
    write: (chunk, state) => all((s) => s.write(chunk, state)),
    async reset() {
      await all((s) => s.close(false));
      sinks = make();
    },
    commit: () => all((s) => s.commit()),
    close: (keep) => all((s) => s.close(keep)),
  };
}

/** A verified stream (a stored blob) → what the job keeps, as before the fetch engine existed. */
async function storeStream(
  source: ReadableStream<Uint8Array>,
  job: Pick<LayerJob, 'descriptor' | 'diffId' | 'label' | 'needCompressed' | 'needUncompressed'>,
  options: Pick<PullOptions, 'store' | 'signal' | 'zstd'>,
  onBytes: (n: number) => void,
): Promise<void> {
  const { store, signal } = options;
  const { needCompressed, needUncompressed } = job;
  const d = job.descriptor;
  const counted = source.pipeThrough(counter(onBytes));
  if (!needUncompressed) {
    await store.put(d.digest, counted, signal);
    return;
  }
  // One failing branch (say, a diff_id mismatch) stops the copy into the others.
  const stop = new AbortController();
  const halt = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      stop.abort(err);
      throw err;
    });
  const branches = needCompressed ? 2 : 1;
  const pipes = Array.from(
    { length: branches },
    () => new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 4 }, { highWaterMark: 4 }),
  );
  const tasks: Promise<unknown>[] = [
    halt(
      fanOut(
        counted,
        pipes.map((p) => p.writable),
        stop.signal,
      ),
    ),
  ];
  tasks.push(halt(decompressInto(pipes[0]!.readable, job, options)));
  if (needCompressed) tasks.push(halt(store.put(d.digest, pipes[1]!.readable, signal)));
  const settled = await Promise.allSettled(tasks);
  const failures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => LongshoreError.from(s.reason));
  if (failures.length) {
    // Prefer the error that says what went wrong over the cancellations it caused elsewhere.
    throw failures.find((e) => e.code !== ErrorCode.Internal && e.code !== ErrorCode.Aborted) ?? failures[0]!;
  }
}

function counter(onBytes: (n: number) => void): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      onBytes(chunk.byteLength);
      controller.enqueue(chunk);
    },
  });
}

/** Copy one stream into several writables, moving at the pace of the slowest; `signal` stops it. */
export async function fanOut(
  source: ReadableStream<Uint8Array>,
  targets: WritableStream<Uint8Array>[],
  signal?: AbortSignal,
): Promise<void> {
  const writers = targets.map((t) => t.getWriter());
  const reader = source.getReader();
  const stopped = new Promise<never>((_, reject) => {
    const fire = () => reject(signal?.reason ?? new AbortedError());
    if (signal?.aborted) fire();
    else signal?.addEventListener('abort', fire, { once: true });
  });
  stopped.catch(() => undefined);
  try {
    for (;;) {
      await Promise.race([Promise.all(writers.map((w) => w.ready)), stopped]);
      const { done, value } = await reader.read();
      if (done) break;
      for (const w of writers) void w.write(value).catch(() => undefined);
    }
    await Promise.all(writers.map((w) => w.close()));
  } catch (err) {
    await Promise.all(writers.map((w) => w.abort(err).catch(() => undefined)));
    await reader.cancel(err).catch(() => undefined);
    throw err;
  }
}

/** Run `fn` over `items`, at most `limit` at once; the first failure stops new work and aborts the rest. */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal | undefined,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      throwIfAborted(signal);
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  const rejected = results.find((r) => r.status === 'rejected');
  if (rejected) throw (rejected as PromiseRejectedResult).reason;
}
