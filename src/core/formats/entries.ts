// The tar entries every format is made of: files, directories, JSON documents and references to
// stored blobs, all root-owned with mtime 0, so the same images always give the same bytes.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { TarEntryType } from '../tar/header.ts';
import { contentRef, type ContentRef, type TarPlanEntry } from '../tar/writer.ts';
import type { Format, PlanContext, SinkImage } from './types.ts';
import type { Descriptor } from '../image/model.ts';
import { foreignLayerNeeded, foreignUrls } from '../image/foreign.ts';

const enc = new TextEncoder();

export function fileEntry(path: string, content: TarPlanEntry['content'], size: number): TarPlanEntry {
  return { header: { path, type: TarEntryType.File, size, mode: 0o644, uid: 0, gid: 0, mtime: 0 }, content };
}

export function dirEntry(path: string): TarPlanEntry {
  return { header: { path: `${path.replace(/\/+$/, '')}/`, type: TarEntryType.Directory, size: 0, mode: 0o755, uid: 0, gid: 0, mtime: 0 } };
}

export function bytesEntry(path: string, bytes: Uint8Array): TarPlanEntry {
  return fileEntry(path, bytes, bytes.byteLength);
}

/** Compact JSON, as Go's encoding/json writes it (moby, ggcr): key order is the object's own. */
export function jsonEntry(path: string, value: unknown): TarPlanEntry {
  return bytesEntry(path, enc.encode(JSON.stringify(value)));
}

/**
 * A layer's stored bytes (under `key`: its digest, or its diff_id), for a format that needs them;
 * a foreign layer left out of the pull (its source not allowed) fails with what to do.
 */
export async function storedLayerRef(ctx: PlanContext, key: string, d: Descriptor, expected: number | undefined, what: string, format: string): Promise<ContentRef> {
  if (foreignUrls(d).length > 0 && !(await isStored(ctx, key))) throw foreignLayerNeeded(d, what, format);
  return storedRef(ctx, key, expected, what);
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
 * A reference to a blob in the store, its size checked against what the manifest says, so the
 * plan's size is exact and a blob missing from the store fails now, not halfway through a download.
 */
export async function storedRef(ctx: PlanContext, key: string, expected: number | undefined, what: string): Promise<ContentRef> {
  const size: unknown = await ctx.size(key);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new LongshoreError(ErrorCode.Store, `The ${what} (${key}) is not in the store.`, { hint: 'Pull the image again.', retryable: true, data: { key } });
  }
  if (expected !== undefined && size !== expected) {
    throw new LongshoreError(ErrorCode.Store, `The stored ${what} (${key}) is ${size} bytes, but its descriptor says ${expected}.`, {
      hint: 'The cache holds a different blob than the manifest describes. Clear the cache and pull again.',
      data: { key, expected, actual: size },
    });
  }
  return contentRef(key, size);
}

/** Sorted by path, each path once (the first wins): the order `docker save` and `tar --sort=name` give. */
export function sortEntries(entries: TarPlanEntry[]): TarPlanEntry[] {
  const seen = new Set<string>();
  return entries
    .filter((e) => (seen.has(e.header.path) ? false : (seen.add(e.header.path), true)))
    .sort((a, b) => (a.header.path < b.header.path ? -1 : a.header.path > b.header.path ? 1 : 0));
}

/** The arguments check every format's plan starts with. */
export function checkImages(format: Format, images: readonly SinkImage[]): void {
  if (!Array.isArray(images) || images.length === 0) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `The ${format.id} format needs at least one image.`, { data: { format: format.id } });
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
