// What the inspector is given about an image: its name, its config (for env, entrypoint, history)
// and its layers. A pulled image and an opened archive both become one of these.
import type { HistoryEntry, Image, ImageConfig } from '../image/model.ts';
import { configPlatformLabel } from '../image/platform.ts';

export interface InspectLayer {
  /** Digest of the layer blob (as served, usually compressed); the store key, or after a legacy pull the diff_id is. */
  digest: string;
  mediaType: string;
  /** Stored (compressed) size in bytes. */
  size: number;
  /** Uncompressed digest from the config's rootfs.diff_ids. */
  diffId: string | undefined;
}

export interface InspectTarget {
  /** 'registry/repository:tag' for a pull; the archive's image name (or file name) for an archive. */
  reference: string;
  /** The manifest digest, when known. */
  digest?: string;
  /** 'linux/amd64'. */
  platform?: string;
  /** The image config JSON, parsed. */
  config: ImageConfig;
  /** Bottom layer first. */
  layers: InspectLayer[];
}

/** The target of a pulled image. */
export function inspectTargetOf(image: Image): InspectTarget {
  const c = image.config;
  const target: InspectTarget = {
    reference: image.reference.canonical,
    digest: image.digest,
    config: c,
    layers: image.layers.map((l) => ({
      digest: l.descriptor.digest,
      mediaType: l.descriptor.mediaType,
      size: l.descriptor.size,
      diffId: l.diffId,
    })),
  };
  const platform = configPlatformLabel(c);
  if (platform) target.platform = platform;
  return target;
}

export interface HistoryStep {
  entry: HistoryEntry;
  /** The layer this step made, or undefined for a step that changed only the config (empty_layer). */
  layer: number | undefined;
}

/**
 * The config's history beside the layers: each non-empty step takes the next layer, as Docker and
 * the OCI image-spec (config.md "history") pair them. When the counts disagree, steps get no layers.
 */
export function historySteps(config: ImageConfig, layerCount: number): { steps: HistoryStep[]; aligned: boolean } {
  const history = config.history ?? [];
  const nonEmpty = history.filter((h) => !h.empty_layer).length;
  const aligned = nonEmpty === layerCount;
  let next = 0;
  const steps = history.map((entry) => ({ entry, layer: aligned && !entry.empty_layer ? next++ : undefined }));
  return { steps, aligned };
}
