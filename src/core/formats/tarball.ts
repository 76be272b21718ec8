// go-containerregistry's tarball (`tarball.Write`, `crane pull` without --format): per image the
// config as `sha256:<hex>` and each layer blob byte-exact as `<hex>.tar.gz`, then manifest.json
// with Config, RepoTags, Layers (and LayerSources for foreign layers). Layers are named by what
// they hold: `.tar.gz` gzip, `.tar.zst` zstd, `.tar` uncompressed (ggcr says `.tar.gz` for all;
// loaders sniff the bytes either way, people and gunzip read the name). No index.json, so the
// manifest digest is not recorded, but no layer is decompressed and the config (the image ID) is
// byte-exact. Order as ggcr writes it (config, then layers, image by image, each blob once;
// manifest.json last), images in the order given rather than ggcr's map order, so it is fixed.
import { digestHex } from '../digest.ts';
import { isForeignLayer, layerCompression } from '../image/media-types.ts';
import type { Descriptor, Layer } from '../image/model.ts';
import { bytesEntry, checkImages, defineFormat, fileEntry, jsonEntry, requireLayer, storedRef } from './entries.ts';
import { repoTag, type Format, type FormatEntry, type PlanContext, type SinkImage } from './types.ts';

interface ManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

const EXTENSIONS = { gzip: '.tar.gz', zstd: '.tar.zst', none: '.tar', unknown: '.tar.gz' } as const;

export function layerFileName(layer: Layer): string {
  return `${digestHex(layer.descriptor.digest)}${EXTENSIONS[layerCompression(layer.descriptor.mediaType)]}`;
}

export const tarballFormat: Format = defineFormat({
  id: 'tarball',
  label: 'crane tarball',
  description:
    'The tarball crane pull writes by default: config and compressed layers as they are, plus manifest.json; loads in Docker and Podman.',
  needsUncompressed: false,
  multiImage: true,
  allPlatforms: false,
  async entries(images: SinkImage[], ctx: PlanContext): Promise<FormatEntry[]> {
    checkImages(this, images);
    const entries: FormatEntry[] = [];
    const written = new Set<string>();
    const manifest = new Map<string, ManifestEntry>();
    for (const { image, reference } of images) {
      const tag = repoTag(reference, image.digest);
      const known = manifest.get(image.digest);
      if (known) {
        if (!known.RepoTags.includes(tag)) known.RepoTags.push(tag);
        continue;
      }
      const config = image.manifest.config.digest;
      if (!written.has(config)) {
        written.add(config);
        entries.push(bytesEntry(config, image.configBytes));
      }
      const entry: ManifestEntry = { Config: config, RepoTags: [tag], Layers: [] };
      const sources: Record<string, Descriptor> = {};
      for (const layer of image.layers) {
        const name = layerFileName(layer);
        entry.Layers.push(name);
        if (layer.diffId && isForeignLayer(layer.descriptor.mediaType)) sources[layer.diffId] = layer.descriptor;
        if (written.has(name)) continue;
        written.add(name);
        await requireLayer(ctx, layer.descriptor, layer.descriptor.digest, `layer ${layer.index + 1} of ${image.digest}`, this.label);
        const ref = await storedRef(ctx, layer.descriptor.digest, layer.descriptor.size, `layer ${layer.index + 1} of ${image.digest}`);
        entries.push(fileEntry(name, ref, ref.size));
      }
      if (Object.keys(sources).length) entry.LayerSources = sources;
      manifest.set(image.digest, entry);
    }
    entries.push(jsonEntry('manifest.json', [...manifest.values()]));
    return entries;
  },
});
