// The OCI image layout (image-spec image-layout.md) as tar entries: `oci-layout`, `index.json` and
// `blobs/sha256/<hex>`, every blob once and byte-exact (manifests and configs as the registry
// served them, layers as stored, compressed or not), so every digest survives. Shared by the docker
// (Docker 25+ `docker save`) and oci formats.
import { digestHex } from '../digest.ts';
import { MediaType } from '../image/media-types.ts';
import type { Descriptor, Image, ImageIndex } from '../image/model.ts';
import type { Platform } from '../image/platform.ts';
import type { PulledIndex } from '../pull.ts';
import { bytesEntry, dirEntry, fileEntry, jsonEntry, storedRef } from './entries.ts';
import type { FormatEntry, PlanContext } from './types.ts';

/** containerd's name annotation (containerd images.AnnotationImageName): the full reference. */
export const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
/** image-spec annotations.md: the reference name within a layout. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export const LAYOUT_VERSION = '1.0.0';

export function blobPath(digest: string): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/** The blobs of a layout, each once whatever number of images share it. */
export class LayoutBlobs {
  readonly #entries = new Map<string, FormatEntry>();

  constructor(private readonly ctx: PlanContext) {}

  /** A blob whose bytes are in hand (manifest, config, index). */
  bytes(digest: string, bytes: Uint8Array): string {
    const path = blobPath(digest);
    if (!this.#entries.has(path)) this.#entries.set(path, bytesEntry(path, bytes));
    return path;
  }

  /** A blob in the store, by its digest (a layer as the registry serves it). */
  async stored(d: Descriptor, what: string): Promise<string> {
    const path = blobPath(d.digest);
    if (!this.#entries.has(path)) {
      const ref = await storedRef(this.ctx, d.digest, d.size, what);
      this.#entries.set(path, fileEntry(path, ref, ref.size));
    }
    return path;
  }

  /** An image's manifest, config and layers; returns the config and layer paths. */
  async image(image: Image): Promise<{ config: string; layers: string[] }> {
    this.bytes(image.digest, image.manifestBytes);
    const config = this.bytes(image.manifest.config.digest, image.configBytes);
    const layers: string[] = [];
    for (const layer of image.layers) layers.push(await this.stored(layer.descriptor, `layer ${layer.index + 1} of ${image.digest}`));
    return { config, layers };
  }

  /** A whole index: its bytes, nested indexes', and every child image's blobs. */
  async index(pulled: PulledIndex): Promise<void> {
    this.bytes(pulled.index.digest, pulled.index.manifestBytes);
    for (const nested of pulled.nested) this.bytes(nested.digest, nested.manifestBytes);
    for (const child of pulled.children) await this.image(child);
  }

  /** `blobs/`, `blobs/sha256/` and every blob (unsorted; formats sort the whole archive). */
  entries(): FormatEntry[] {
    return [dirEntry('blobs'), dirEntry('blobs/sha256'), ...this.#entries.values()];
  }
}

/**
 * The descriptor of a manifest or index for index.json, keys in the order Go's ocispec.Descriptor
 * writes them (mediaType, digest, size, annotations, platform).
 */
export function layoutDescriptor(target: Image | ImageIndex, annotations: Record<string, string>, platform?: Platform): Descriptor {
  const d: Descriptor = { mediaType: target.mediaType, digest: target.digest, size: target.manifestBytes.byteLength };
  if (Object.keys(annotations).length) d.annotations = annotations;
  if (platform) d.platform = platform;
  return d;
}

/** The platform the registry's index gave for an image chosen from it, if it was. */
export function indexPlatform(image: Image): Platform | undefined {
  return image.descriptor.digest === image.digest ? image.descriptor.platform : undefined;
}

/** The platform an image's config states, in ocispec.Platform's key order, as moby's Image.Platform() gives it. */
export function configPlatform(image: Image): Platform | undefined {
  const c = image.config;
  if (!c.os || !c.architecture) return undefined;
  const p: Platform = { architecture: c.architecture, os: c.os };
  if (c['os.version']) p['os.version'] = c['os.version'];
  const features = (c as { 'os.features'?: string[] })['os.features'];
  if (features?.length) p['os.features'] = features;
  if (c.variant) p.variant = c.variant;
  return p;
}

/** `oci-layout` and `index.json` listing `manifests`. */
export function layoutFiles(manifests: Descriptor[]): FormatEntry[] {
  return [
    jsonEntry('oci-layout', { imageLayoutVersion: LAYOUT_VERSION }),
    jsonEntry('index.json', { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }),
  ];
}
