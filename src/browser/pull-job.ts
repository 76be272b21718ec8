// A whole pull as the worker runs it: resolve, fetch verified blobs into IndexedDB, plan the
// chosen format and compose the archive Blob from header bytes and stored Blobs.
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import { parseReference, downloadFileName, type ImageReference } from '../core/reference.ts';
import { RegistryClient } from '../core/registry/client.ts';
import { RemoteSource } from '../core/image/remote.ts';
import { DEFAULT_PLATFORM, configPlatformLabel, formatPlatform, parsePlatform, selectablePlatforms } from '../core/image/platform.ts';
import { pull, pullIndex, type PullOptions } from '../core/pull.ts';
import { formatById } from '../core/formats/index.ts';
import { proxyRewrite } from '../core/http/transport.ts';
import { inspectTargetOf } from '../core/listing/target.ts';
import type { ArchivePlan, SinkImage } from '../core/formats/types.ts';
import type { LayerPlan, PullEvent } from '../core/progress.ts';
import type { Credentials } from '../core/registry/auth.ts';
import { observeRegistry, type RegistryNotice } from '../core/registry/rate-limit.ts';
import type { IdbBlobStore } from './idb-store.ts';
import type { LayerPool } from './layer-pool.ts';
import type { Phase, PullOutcome, PullRequest, ResolveSummary, WorkerConfig } from './protocol.ts';
import { CachedSource } from '../core/image/cached-source.ts';
import { verifiedStore } from '../core/store/verified-read.ts';
import { recordAndEvict, type ImageCatalog } from './image-catalog.ts';

export interface JobContext {
  config: WorkerConfig;
  store: IdbBlobStore;
  fetch: typeof fetch;
  signal: AbortSignal;
  onPhase: (phase: Phase) => void;
  onProgress: (event: PullEvent) => void;
  /** Layer workers to spread layers over; without one, layers are fetched in this worker. */
  pool?: LayerPool;
  /** Rate limits and retry waits the registries report. */
  onNotice?: (notice: RegistryNotice) => void;
  /** The image catalog: offline answers from earlier pulls, and a record of each pull (image-catalog.ts). */
  catalog?: ImageCatalog;
}

function sourceFor(ctx: Pick<JobContext, 'config' | 'fetch' | 'onNotice'>, credentials?: Record<string, Credentials>): RemoteSource {
  const transport = { fetch: (input: string, init?: RequestInit) => ctx.fetch(input, init), rewrite: proxyRewrite(ctx.config.proxyBase) };
  const client = new RegistryClient({
    transport: ctx.onNotice ? observeRegistry(transport, ctx.onNotice) : transport,
    credentials: (host) => credentials?.[host],
  });
  return new RemoteSource(client);
}

export async function resolveJob(ctx: Pick<JobContext, 'config' | 'fetch' | 'signal' | 'onNotice' | 'catalog'>, reference: string, credentials?: Record<string, Credentials>): Promise<ResolveSummary> {
  const ref = parseReference(reference);
  const resolved = await (ctx.catalog ? new CachedSource(sourceFor(ctx, credentials), ctx.catalog) : sourceFor(ctx, credentials)).resolve(ref, ctx.signal);
  if (resolved.kind === 'index') {
    return {
      kind: 'index',
      reference: resolved.reference.canonical,
      digest: resolved.digest,
      mediaType: resolved.mediaType,
      platforms: selectablePlatforms(resolved.manifest.manifests).map((c) => ({ label: formatPlatform(c.platform), digest: c.descriptor.digest })),
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

/** Compose the archive from header bytes and stored Blobs: no layer is read into JS memory. */
export async function composeBlob(plan: ArchivePlan, store: IdbBlobStore): Promise<Blob> {
  const parts: BlobPart[] = [];
  for (const part of plan.parts) {
    if (part instanceof Uint8Array) {
      parts.push(part as BlobPart);
      continue;
    }
    const blob = await store.getBlob(part.key);
    if (!blob) throw new LongshoreError(ErrorCode.Store, `Blob ${part.key} vanished from the browser cache while assembling.`, { hint: 'Pull again; the browser may have evicted storage.', retryable: true });
    if (blob.size !== part.size) throw new LongshoreError(ErrorCode.Store, `Cached blob ${part.key} is ${blob.size} bytes, expected ${part.size}.`, { retryable: true });
    parts.push(blob);
  }
  const blob = new Blob(parts, { type: 'application/x-tar' });
  if (blob.size !== plan.size) throw new LongshoreError(ErrorCode.Internal, `Assembled ${blob.size} bytes, planned ${plan.size}.`);
  return blob;
}

/** One archive name for several images: the first image's name plus how many more. */
export function archiveFileName(refs: ImageReference[]): string {
  const first = downloadFileName(refs[0]!);
  return refs.length === 1 ? first : first.replace(/\.tar$/, `+${refs.length - 1}.tar`);
}

export async function pullJob(ctx: JobContext, request: PullRequest): Promise<PullOutcome> {
  if (request.references.length === 0) throw new LongshoreError(ErrorCode.InvalidArgument, 'No image name given.', { hint: 'Type an image name, e.g. alpine:latest.' });
  const refs = request.references.map((r) => parseReference(r));
  const format = formatById(request.format);
  if (!format) throw new LongshoreError(ErrorCode.InvalidArgument, `Unknown output format "${request.format}".`, { hint: 'Choose one of the formats offered.' });
  if (refs.length > 1 && !format.multiImage) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.label} format holds one image; ${refs.length} names were given.`, {
      hint: 'Choose a format that holds several images (docker, legacy, tarball), or pull one name at a time.',
    });
  }
  if (request.allPlatforms && !format.allPlatforms) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.label} format holds one platform of an image.`, {
      hint: 'Choose the oci format to keep every platform, or pick one platform.',
    });
  }
  const platform = request.platform ? parsePlatform(request.platform) : DEFAULT_PLATFORM;
  const source = ctx.catalog ? new CachedSource(sourceFor(ctx, request.credentials), ctx.catalog) : sourceFor(ctx, request.credentials);
  const store = verifiedStore(ctx.store, { signal: ctx.signal }); // trust: cached blobs re-hashed before use, damaged ones re-fetched
  ctx.onPhase('resolving');
  let downloading = false;
  // Layers of every image in one list: image k's layer i shows as row offset(k) + i.
  const rows: LayerPlan[] = [];
  const images: SinkImage[] = [];
  for (const ref of refs) {
    const offset = rows.length;
    const options: PullOptions = {
      store,
      platform,
      signal: ctx.signal,
      uncompressed: format.needsUncompressed,
      // The archive needs one copy of each layer; writing the other to IndexedDB too cost legacy
      // pulls a third more storage work (and memory) for a cache only other formats would use.
      keepCompressed: !format.needsUncompressed,
      ...(ctx.config.concurrency ? { concurrency: ctx.config.concurrency } : {}),
      ...(ctx.pool ? { layerRunner: (job, onBytes, signal) => ctx.pool!.run(job, ctx.config, request.credentials, onBytes, signal, source.client.shareAuth()) } : {}),
      onProgress: (event) => {
        if (event.type === 'plan') {
          if (!downloading) {
            downloading = true;
            ctx.onPhase('downloading');
          }
          rows.splice(offset, rows.length - offset, ...event.layers.map((l) => ({ ...l, index: l.index + offset })));
          ctx.onProgress({ type: 'plan', layers: rows.slice(), totalBytes: rows.reduce((n, l) => n + l.size, 0) });
        } else if (event.type === 'layer') {
          ctx.onProgress({ ...event, index: event.index + offset });
        } else {
          ctx.onProgress(event);
        }
      },
    };
    if (request.allPlatforms) {
      const { image, index } = await pullIndex(source, ref, options);
      images.push({ image, reference: ref, ...(index ? { index } : {}) });
    } else {
      images.push({ image: (await pull(source, ref, options)).image, reference: ref });
    }
  }
  ctx.onPhase('assembling');
  const plan = await format.plan(images, {
    size: async (key) => {
      const size = await ctx.store.size(key);
      if (size === undefined) throw new LongshoreError(ErrorCode.Store, `Blob ${key} is missing from the browser cache.`, { retryable: true });
      return size;
    },
  });
  ctx.signal.throwIfAborted();
  const blob = await composeBlob(plan, ctx.store);
  if (ctx.catalog && source instanceof CachedSource) await recordAndEvict(ctx.catalog, source.seen, images.map((i, k) => ({ typed: request.references[k]!, image: i.image, ...(i.index ? { index: i.index } : {}) })), ctx.store, globalThis.navigator?.storage).catch(() => []); // the archive is ready; a catalog that cannot be written only costs offline use
  const first = images[0]!.image;
  const c = first.config;
  return {
    blob,
    fileName: archiveFileName(refs),
    size: blob.size,
    format: format.id,
    reference: images.map((i) => i.image.reference.canonical).join(' '),
    digest: first.digest,
    platform: configPlatformLabel(c),
    inspect: inspectTargetOf(first),
    ...(source instanceof CachedSource && source.seen.notes.length ? { cache: source.seen.notes } : {}),
  };
}
