// What every output format (a sink) takes and gives. A format *plans* an archive: header bytes
// plus references to stored blobs, with its exact size, so the browser can compose a Blob from
// stored Blobs and Node can stream it, without layers passing through JS memory.
import type { ArchivePart } from '../tar/writer.ts';
import type { Image } from '../image/model.ts';
import type { ImageReference } from '../reference.ts';
import type { PulledIndex } from '../pull.ts';

export interface SinkImage {
  /** The image itself; for an all-platforms pull, the child for the chosen platform. */
  image: Image;
  /** The name the user asked for (naming in RepoTags / index annotations). */
  reference: ImageReference;
  /**
   * Every platform of an index (from `pullIndex`). Formats with `allPlatforms` write the whole
   * index; the others write `image` only.
   */
  index?: PulledIndex;
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
  /** One line a user understands: what it is and who loads it. */
  readonly description: string;
  /** Needs every layer decompressed and stored under its diff_id. */
  readonly needsUncompressed: boolean;
  /** Holds several images in one archive (crane pull IMAGE… TARBALL). */
  readonly multiImage: boolean;
  /** Can hold a whole index (every platform) when `SinkImage.index` is given. */
  readonly allPlatforms: boolean;
  plan(images: SinkImage[], ctx: PlanContext): Promise<ArchivePlan>;
}

/**
 * The tag an image is written under: the reference's own, or for a digest-only pull
 * `digest-<hex of the digest asked for>`, so an image pulled by digest still loads under its
 * repository's name rather than as a nameless `<none>` image (a digest itself cannot be a tag: no
 * ':' allowed). Not crane's constant `i-was-a-digest`, which makes two digests of one repository
 * overwrite each other; not `sha256-<hex>`, the OCI referrers tag schema (distribution-spec
 * "Referrers Tag Schema", and cosign's `sha256-<hex>.sig`), which a later push of the loaded image
 * would collide with. The digest asked for, not a chosen child's, so the name says which pull it
 * came from.
 */
export function tagFor(ref: ImageReference, digest: string): string {
  if (ref.tag !== undefined) return ref.tag;
  const d = ref.digest ?? digest;
  return `digest-${d.slice(d.indexOf(':') + 1)}`;
}

/** "alpine:latest", "ghcr.io/o/r:v1": Docker's familiar form, as `docker save` writes RepoTags. */
export function repoTag(ref: ImageReference, digest: string): string {
  const base = ref.familiar.replace(/[@:][^/]*$/, '').replace(/@.*$/, '');
  return `${base}:${tagFor(ref, digest)}`;
}

/** "docker.io/library/alpine:latest": the fully qualified name (containerd's io.containerd.image.name). */
export function qualifiedTag(ref: ImageReference, digest: string): string {
  return `${ref.name}:${tagFor(ref, digest)}`;
}
