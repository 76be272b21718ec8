// The image model, after go-containerregistry's pkg/v1: small immutable Image / Layer / ImageIndex
// values. Sources (remote registry, local archive, cache) return them; sinks (formats) take them.
// Raw manifest and config bytes are kept byte-exact so digests survive every sink.
import type { ImageReference } from '../reference.ts';
import type { Platform } from './platform.ts';

/** OCI image-spec descriptor.md. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

/** OCI image-spec manifest.md / Docker image manifest v2 schema 2. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** OCI image-spec image-index.md / Docker manifest list. */
export interface IndexManifest {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** OCI image-spec config.md (the fields we read; the bytes are kept whole). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  'os.version'?: string;
  created?: string;
  author?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, object>;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Volumes?: Record<string, object>;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
  };
  rootfs: { type: string; diff_ids: string[] };
  history?: HistoryEntry[];
}

export interface Layer {
  readonly descriptor: Descriptor;
  /** Position in the manifest, 0 = bottom. */
  readonly index: number;
  /** Uncompressed digest from the config's rootfs.diff_ids. */
  readonly diffId: string | undefined;
  /** The blob's bytes as stored (compressed), verified against digest and size while they pass. */
  open(signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
}

export interface Image {
  readonly kind: 'image';
  /** The reference it was resolved from, pinned to this manifest's digest (tag kept). */
  readonly reference: ImageReference;
  readonly mediaType: string;
  readonly digest: string;
  readonly manifestBytes: Uint8Array;
  readonly manifest: ImageManifest;
  readonly configBytes: Uint8Array;
  readonly config: ImageConfig;
  readonly layers: readonly Layer[];
  /** The index descriptor this image was chosen through, when it came from an index. */
  readonly descriptor: Descriptor;
}

export interface PlatformChoice {
  platform: Platform;
  /** "linux/arm64/v8" */
  label: string;
  descriptor: Descriptor;
}

export interface ImageIndex {
  readonly kind: 'index';
  readonly reference: ImageReference;
  readonly mediaType: string;
  readonly digest: string;
  readonly manifestBytes: Uint8Array;
  readonly manifest: IndexManifest;
  /** Runnable children (attestations left out), in index order. */
  platforms(): PlatformChoice[];
  /** The child image for a platform (containerd's matching rules). */
  image(platform: Platform, signal?: AbortSignal): Promise<Image>;
  /** Any child by descriptor: an image, or a nested index. */
  child(descriptor: Descriptor, signal?: AbortSignal): Promise<Image | ImageIndex>;
}

export type Resolved = Image | ImageIndex;
