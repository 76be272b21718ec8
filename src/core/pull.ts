// crane pull's first half: image name → verified manifest, config and layer blobs in a BlobStore.
// Layers are fetched in parallel (bounded), verified while streaming, and kept only once verified;
// blobs already in the store are not fetched again. With `uncompressed`, each layer is also
// decompressed on the fly and kept under its diff_id after that digest is verified too.
import { AbortedError, ErrorCode, LongshoreError, throwIfAborted } from './errors.ts';
import { decompress } from './compression.ts';
import { verifyingStream } from './digest.ts';
import { abortableSleep } from './http/retry.ts';
import type { ImageReference } from './reference.ts';
import type { Image, ImageIndex, Layer } from './image/model.ts';
import { DEFAULT_PLATFORM, formatPlatform, type Platform } from './image/platform.ts';
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
  /** Also keep every layer uncompressed under its diff_id (needed by the legacy docker-save format). */
  uncompressed?: boolean;
  /** A zstd decoder, for `uncompressed` with zstd layers. */
  zstd?: () => TransformStream<Uint8Array, Uint8Array>;
  /** Attempts per blob for retryable failures (default 3). */
  attempts?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface PullResult {
  image: Image;
  /** The index the image was chosen from, if the name pointed at one. */
  index?: ImageIndex;
}

export const DEFAULT_CONCURRENCY = 4;

/** Resolve `ref` to one image (choosing a platform in an index). */
export async function resolveImage(source: RemoteSource, ref: ImageReference, platform: Platform = DEFAULT_PLATFORM, signal?: AbortSignal): Promise<PullResult> {
  const resolved = await source.resolve(ref, signal);
  if (resolved.kind === 'image') return { image: resolved };
  return { image: await resolved.image(platform, signal), index: resolved };
}

export async function pull(source: RemoteSource, ref: ImageReference, options: PullOptions): Promise<PullResult> {
  const { store, signal } = options;
  const emit = options.onProgress ?? (() => undefined);
  emit({ type: 'resolving', reference: ref.canonical });
  const result = await resolveImage(source, ref, options.platform, signal);
  const { image } = result;
  const platform = image.config.os && image.config.architecture
    ? formatPlatform({ os: image.config.os, architecture: image.config.architecture, variant: image.config.variant })
    : undefined;
  emit({ type: 'resolved', reference: image.reference.canonical, digest: image.digest, mediaType: image.mediaType, ...(platform ? { platform } : {}) });
  await pullLayers(image, options, emit);
  return result;
}

/** Which store keys a layer needs, and whether they are all there already. */
async function layerPlan(layer: Layer, store: BlobStore, uncompressed: boolean): Promise<LayerPlan & { needCompressed: boolean; needUncompressed: boolean }> {
  const d = layer.descriptor;
  const needCompressed = !(await store.has(d.digest));
  const needUncompressed = uncompressed && layer.diffId !== undefined && layer.diffId !== d.digest && !(await store.has(layer.diffId));
  return { index: layer.index, digest: d.digest, mediaType: d.mediaType, size: d.size, cached: !needCompressed && !needUncompressed, needCompressed, needUncompressed };
}

export async function pullLayers(image: Image, outer: PullOptions, emit: (e: PullEvent) => void = outer.onProgress ?? (() => undefined)): Promise<void> {
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

async function pullLayersWith(image: Image, options: PullOptions, emit: (e: PullEvent) => void, outerSignal: AbortSignal | undefined, stop: AbortController): Promise<void> {
  const { store, signal } = options;
  const uncompressed = options.uncompressed ?? false;
  const plans = await Promise.all(image.layers.map((l) => layerPlan(l, store, uncompressed)));
  emit({
    type: 'plan',
    layers: plans.map(({ needCompressed: _a, needUncompressed: _b, ...p }) => p),
    totalBytes: plans.reduce((n, p) => n + p.size, 0),
  });
  for (const p of plans) {
    emit({ type: 'layer', index: p.index, digest: p.digest, state: p.cached ? 'cached' : 'waiting', done: p.cached ? p.size : 0, total: p.size });
  }
  const todo = plans.filter((p) => !p.cached);
  await mapLimit(todo, options.concurrency ?? DEFAULT_CONCURRENCY, signal, async (p) => {
    const layer = image.layers[p.index]!;
    const attempts = options.attempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      let done = 0;
      try {
        emit({ type: 'layer', index: p.index, digest: p.digest, state: 'downloading', done: 0, total: p.size });
        await fetchLayer(layer, p.needCompressed, p.needUncompressed, options, (n) => {
          done += n;
          emit({ type: 'layer', index: p.index, digest: p.digest, state: 'downloading', done, total: p.size });
        });
        emit({ type: 'layer', index: p.index, digest: p.digest, state: 'done', done: p.size, total: p.size });
        return;
      } catch (err) {
        const e = LongshoreError.from(err);
        if (outerSignal?.aborted) throw new AbortedError();
        if (signal?.aborted) throw e; // another layer failed first; its error is the one reported
        if (!e.retryable || attempt >= attempts || e.code === ErrorCode.Aborted) {
          emit({ type: 'layer', index: p.index, digest: p.digest, state: 'failed', done, total: p.size });
          stop.abort();
          throw e;
        }
        await (options.sleep ?? abortableSleep)(500 * 2 ** (attempt - 1), signal);
      }
    }
  });
}

async function fetchLayer(layer: Layer, needCompressed: boolean, needUncompressed: boolean, options: PullOptions, onBytes: (n: number) => void): Promise<void> {
  const { store, signal } = options;
  const d = layer.descriptor;
  const counted = (await layer.open(signal)).pipeThrough(counter(onBytes));
  if (!needUncompressed) {
    await store.put(d.digest, counted, signal);
    return;
  }
  const diffId = layer.diffId!;
  // One failing branch (say, a diff_id mismatch) stops the copy into the others.
  const stop = new AbortController();
  const halt = <T>(p: Promise<T>): Promise<T> => p.catch((err: unknown) => {
    stop.abort(err);
    throw err;
  });
  const branches = needCompressed ? 2 : 1;
  const pipes = Array.from({ length: branches }, () => new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 4 }, { highWaterMark: 4 }));
  const tasks: Promise<unknown>[] = [halt(fanOut(counted, pipes.map((p) => p.writable), stop.signal))];
  const plain = pipes[0]!.readable;
  tasks.push(halt((async () => {
    const { stream } = await decompress(plain, options.zstd ? { zstd: options.zstd } : {});
    await store.put(diffId, stream.pipeThrough(verifyingStream({ digest: diffId, label: `uncompressed layer ${layer.index + 1}` })), signal);
  })()));
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
export async function fanOut(source: ReadableStream<Uint8Array>, targets: WritableStream<Uint8Array>[], signal?: AbortSignal): Promise<void> {
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
export async function mapLimit<T>(items: readonly T[], limit: number, signal: AbortSignal | undefined, fn: (item: T) => Promise<void>): Promise<void> {
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
