// What every output format (a sink) takes and gives. A format *plans* an archive: header bytes
// plus references to stored blobs, with its exact size, so the browser can compose a Blob from
// stored Blobs and Node can stream it, without layers passing through JS memory.
import type { ArchivePart } from '../tar/writer.ts';
import type { Image } from '../image/model.ts';
import type { ImageReference } from '../reference.ts';

export interface SinkImage {
  image: Image;
  /** The name the user asked for (naming in RepoTags / index annotations). */
  reference: ImageReference;
}

export interface PlanContext {
  /** Size of a stored blob (compressed by digest, or uncompressed by diff_id). */
  size(key: string): Promise<number>;
}

export interface ArchivePlan {
  parts: ArchivePart[];
  size: number;
}

export interface Format {
  readonly id: string;
  readonly label: string;
  readonly description: string;
  /** Needs every layer decompressed and stored under its diff_id. */
  readonly needsUncompressed: boolean;
  readonly multiImage: boolean;
  plan(images: SinkImage[], ctx: PlanContext): Promise<ArchivePlan>;
}

/** The tag written for an image: the reference's own, or `sha256-<hex>` for a digest-only pull. */
export function repoTag(ref: ImageReference, digest: string): string {
  const base = ref.familiar.replace(/[@:][^/]*$/, '').replace(/@.*$/, '');
  const tag = ref.tag ?? digest.replace(':', '-');
  return `${base}:${tag}`;
}
