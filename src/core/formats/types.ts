// What every output format (a sink) takes and gives. A format lists its archive's entries in
// order (header + inline bytes or a reference to a stored blob); `plan` turns them into header
// bytes plus references with the exact size, so the browser can write the archive from stored
// blobs and Node can stream it, without layers passing through JS memory. While a pull is still
// running, an uncompressed layer's size is not known yet: such an entry holds a `LaterRef` and
// its header is encoded when its turn comes (see stream.ts).
import type { ArchivePart, ContentRef, TarPlanEntry } from '../tar/writer.ts';
import type { TarEntryHeader } from '../tar/header.ts';
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
  /**
   * True for a blob the running pull will store but whose size only its bytes tell (a layer still
   * being decompressed): the entry is left unsized (`LaterRef`) instead of asking `size`.
   */
  later?(key: string): boolean;
}

/** A stored blob whose size is known only once it is stored; the entry's header size is a placeholder until then. */
export interface LaterRef {
  readonly kind: 'later';
  readonly key: string;
}

/** A tar entry as a format lists it: like the tar writer's, but its content may still be unsized. */
export interface FormatEntry {
  header: TarEntryHeader;
  content?: TarPlanEntry['content'] | LaterRef;
}

export function laterRef(key: string): LaterRef {
  return { kind: 'later', key };
}

export function isLaterRef(value: unknown): value is LaterRef {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'later';
}

export type { ContentRef };

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
  /** The archive's entries in the order they are written. */
  entries(images: SinkImage[], ctx: PlanContext): Promise<FormatEntry[]>;
  /** The entries as header bytes and stored-blob references, exact size known (every entry sized). */
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
