// The remote source: an image name → Image or ImageIndex read from a registry.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { withDigest, type ImageReference } from '../reference.ts';
import { readCapped } from '../http/transport.ts';
import type { RegistryClient } from '../registry/client.ts';
import { parseConfig, parseManifest, MAX_CONFIG_BYTES } from './manifest.ts';
import type { Descriptor, Image, ImageIndex, IndexManifest, Layer, PlatformChoice, Resolved } from './model.ts';
import { formatPlatform, matchPlatform, selectablePlatforms, type Platform } from './platform.ts';
import { isImageManifestMediaType } from './media-types.ts';

export class RemoteSource {
  constructor(readonly client: RegistryClient) {}

  /** Fetch and check the manifest `ref` names; an image also gets its config. */
  async resolve(ref: ImageReference, signal?: AbortSignal, descriptor?: Descriptor): Promise<Resolved> {
    const fetched = await this.client.getManifest(ref, signal ? { signal } : {});
    const pinned = withDigest(ref, fetched.digest);
    const parsed = parseManifest(fetched.bytes, fetched.contentType, `The manifest of ${ref.canonical}`);
    const desc: Descriptor = descriptor ?? { mediaType: parsed.mediaType, digest: fetched.digest, size: fetched.bytes.byteLength };
    if (parsed.kind === 'index') return this.#index(pinned, parsed.mediaType, fetched.bytes, fetched.digest, parsed.manifest);
    const configBytes = await this.#readConfig(pinned, parsed.manifest.config, signal);
    const config = parseConfig(configBytes, parsed.manifest.layers.length);
    const layers: Layer[] = parsed.manifest.layers.map((d, index) => ({
      descriptor: d,
      index,
      diffId: config.rootfs.diff_ids[index],
      open: (sig?: AbortSignal) =>
        this.client.openBlob(pinned, d, { ...(sig ? { signal: sig } : {}), label: `layer ${index + 1}/${parsed.manifest.layers.length}` }),
    }));
    const image: Image = {
      kind: 'image',
      reference: pinned,
      mediaType: parsed.mediaType,
      digest: fetched.digest,
      manifestBytes: fetched.bytes,
      manifest: parsed.manifest,
      configBytes,
      config,
      layers,
      descriptor: desc,
    };
    return image;
  }

  async #readConfig(ref: ImageReference, d: Descriptor, signal?: AbortSignal): Promise<Uint8Array> {
    if (d.size > MAX_CONFIG_BYTES) {
      throw new LongshoreError(ErrorCode.TooLarge, `The image config is ${d.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit.`, {
        data: { size: d.size },
      });
    }
    const stream = await this.client.openBlob(ref, d, { ...(signal ? { signal } : {}), label: 'config' });
    return (await readCapped(stream, MAX_CONFIG_BYTES))!;
  }

  #index(ref: ImageReference, mediaType: string, bytes: Uint8Array, digest: string, manifest: IndexManifest): ImageIndex {
    const child = async (descriptor: Descriptor, signal?: AbortSignal): Promise<Image | ImageIndex> => {
      const resolved = await this.resolve(withDigest(ref, descriptor.digest), signal, descriptor);
      return resolved;
    };
    return {
      kind: 'index',
      reference: ref,
      mediaType,
      digest,
      manifestBytes: bytes,
      manifest,
      platforms: (): PlatformChoice[] =>
        selectablePlatforms(manifest.manifests)
          .filter(
            (c) =>
              isImageManifestMediaType(c.descriptor.mediaType) ||
              c.descriptor.mediaType.includes('index') ||
              c.descriptor.mediaType.includes('list'),
          )
          .map((c) => ({ platform: c.platform, label: formatPlatform(c.platform), descriptor: c.descriptor })),
      image: async (platform: Platform, signal?: AbortSignal): Promise<Image> => {
        const chosen = matchPlatform(manifest.manifests, platform);
        const resolved = await child(chosen, signal);
        if (resolved.kind === 'index') return resolved.image(platform, signal);
        return resolved;
      },
      child,
    };
  }
}
