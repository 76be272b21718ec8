// The tar entries every format is made of: files, directories, JSON documents and references to
// stored blobs, all root-owned with mtime 0, so the same images always give the same bytes.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { TarEntryType } from '../tar/header.ts';
import { contentRef, planTar, type ContentRef, type TarPlanEntry } from '../tar/writer.ts';
import {
  isLaterRef,
  laterRef,
  type ArchivePlan,
  type Format,
  type FormatEntry,
  type LaterRef,
  type PlanContext,
  type SinkImage,
} from './types.ts';
import type { Descriptor } from '../image/model.ts';
import { foreignLayerNeeded, foreignUrls } from '../image/foreign.ts';

const enc = new TextEncoder();

/** A regular file; for a `LaterRef` the header's size is a placeholder (0) until the blob is stored. */
export function fileEntry(path: string, content: FormatEntry['content'], size: number): FormatEntry {
  return { header: { path, type: TarEntryType.File, size, mode: 0o644, uid: 0, gid: 0, mtime: 0 }, content };
}

export function dirEntry(path: string): FormatEntry {
  return { header: { path: `${path.replace(/\/+$/, '')}/`, type: TarEntryType.Directory, size: 0, mode: 0o755, uid: 0, gid: 0, mtime: 0 } };
}

export function bytesEntry(path: string, bytes: Uint8Array): FormatEntry {
  return fileEntry(path, bytes, bytes.byteLength);
}

/** Compact JSON, as Go's encoding/json writes it (moby, ggcr): key order is the object's own. */
export function jsonEntry(path: string, value: unknown): FormatEntry {
  return bytesEntry(path, enc.encode(JSON.stringify(value)));
}

/** Whether the store holds `key` (a PlanContext may answer a missing key with undefined or by throwing). */
export async function isStored(ctx: PlanContext, key: string): Promise<boolean> {
  try {
    return typeof (await ctx.size(key)) === 'number';
  } catch {
    return false;
  }
}

/**
 * Whether `d` is a foreign layer left out of the pull (its source refused by the proxy): named by
 * the context, or (a plan made after the pull) missing from the store under `key`.
 */
export async function foreignLeftOut(ctx: PlanContext, d: Descriptor, key: string): Promise<boolean> {
  if (foreignUrls(d).length === 0) return false;
  if (ctx.absent?.(d.digest)) return true;
  return !ctx.later?.(key) && !(await isStored(ctx, key));
}

/** For a format that needs a layer's bytes: a foreign layer left out fails with what to do. */
export async function requireLayer(ctx: PlanContext, d: Descriptor, key: string, what: string, format: string): Promise<void> {
  if (await foreignLeftOut(ctx, d, key)) throw foreignLayerNeeded(d, what, format);
}

/**
 * A reference to a blob in the store, its size checked against what the manifest says, so the
 * plan's size is exact and a blob missing from the store fails now, not halfway through a download.
 */
export async function storedRef(ctx: PlanContext, key: string, expected: number | undefined, what: string): Promise<ContentRef> {
  const size: unknown = await ctx.size(key);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new LongshoreError(ErrorCode.Store, `The ${what} (${key}) is not in the store.`, {
      hint: 'Pull the image again.',
      retryable: true,
      data: { key },
    });
  }
  if (expected !== undefined && size !== expected) {
    throw new LongshoreError(ErrorCode.Store, `The stored ${what} (${key}) is ${size} bytes, but its descriptor says ${expected}.`, {
      hint: 'The cache holds a different blob than the manifest describes. Clear the cache and pull again.',
      data: { key, expected, actual: size },
    });
  }
  return contentRef(key, size);
}

/**
 * A blob kept by its own digest whose size only the stored bytes tell (an uncompressed layer):
 * while a pull still produces it (`ctx.later`), a `LaterRef`; else a sized reference.
 */
export async function uncompressedRef(ctx: PlanContext, key: string, what: string): Promise<ContentRef | LaterRef> {
  return ctx.later?.(key) ? laterRef(key) : storedRef(ctx, key, undefined, what);
}

/** Entries whose every content is sized, as the tar writer takes them; a `LaterRef` left means the caller planned too early. */
export function sizedEntries(entries: readonly FormatEntry[]): TarPlanEntry[] {
  return entries.map((e) => {
    if (isLaterRef(e.content)) {
      throw new LongshoreError(ErrorCode.Internal, `The size of ${e.header.path} (${e.content.key}) is not known yet.`, {
        data: { path: e.header.path, key: e.content.key },
      });
    }
    return e as TarPlanEntry;
  });
}

/** A format from its entry list: `plan` is the tar of `entries`, every content sized. */
export function defineFormat(format: Omit<Format, 'plan'>): Format {
  return {
    ...format,
    async plan(images: SinkImage[], ctx: PlanContext): Promise<ArchivePlan> {
      return planTar(sizedEntries(await format.entries.call(this, images, ctx)));
    },
  };
}

/** Sorted by path, each path once (the first wins): the order `docker save` and `tar --sort=name` give. */
export function sortEntries<T extends { header: { path: string } }>(entries: T[]): T[] {
  const seen = new Set<string>();
  return entries
    .filter((e) => (seen.has(e.header.path) ? false : (seen.add(e.header.path), true)))
    .sort((a, b) => (a.header.path < b.header.path ? -1 : a.header.path > b.header.path ? 1 : 0));
}

/** The arguments check every format's plan starts with. */
export function checkImages(format: Pick<Format, 'id' | 'multiImage'>, images: readonly SinkImage[]): void {
  if (!Array.isArray(images) || images.length === 0) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.id} format needs at least one image.`, {
      data: { format: format.id },
    });
  }
  if (images.length > 1 && !format.multiImage) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.id} format holds one image; ${images.length} were given.`, {
      hint: 'Pull the images one at a time, or choose a format that holds several (docker, legacy, tarball).',
      data: { format: format.id, count: images.length },
    });
  }
}

/** Split "registry/repo:tag" into repository and tag (the tag has no '/'). */
export function splitRepoTag(t: string): [string, string] {
  const i = t.lastIndexOf(':');
  return i > 0 && !t.slice(i).includes('/') ? [t.slice(0, i), t.slice(i + 1)] : [t, 'latest'];
}
