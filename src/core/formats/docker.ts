// `docker save` as Docker 25+ writes it (moby image/tarexport, "OCI layout + legacy manifest"): an
// OCI image layout (oci-layout, index.json, blobs/sha256/*) plus manifest.json and repositories,
// so both `docker load` of every version (manifest.json; layer paths point into blobs/, compressed
// layers are decompressed on load) and OCI tools (index.json) read it. Unlike Docker with its
// classic image store, which re-creates uncompressed layers and a new manifest, the blobs here are
// the registry's own: manifest, config and compressed layers byte-exact, so the image digest is
// kept and no layer needs decompressing. (Docker with the containerd image store writes the same.)
//
// index.json has one descriptor per image and tag, as Docker 25 writes them: the platform the
// config states, and for naming:
// - io.containerd.image.name: the full name, "docker.io/library/alpine:latest". podman load
//   (libimage nameFromAnnotations, podman ≥ 4), containerd and nerdctl name the image from it.
// - org.opencontainers.image.ref.name: the tag alone, "latest", as Docker 25 and buildkit's oci
//   exporter write it: a short selector (`skopeo …oci-archive:FILE:latest`, `umoci --image
//   DIR:latest`) that never needs escaping. podman save writes the full name there instead; we
//   follow Docker because this format is Docker's. Alone, the tag would make podman call the image
//   "localhost/latest:latest"; the containerd annotation above is what prevents that (tested).
// A digest-only pull gets the tag `digest-<hex>` (see tagFor in types.ts).
// manifest.json lists each image once (RepoTags gathers its tags), Config and Layers as paths into
// blobs/; foreign layers are included as pulled and listed in LayerSources, as Docker does.
import { digestHex } from '../digest.ts';
import { isForeignLayer } from '../image/media-types.ts';
import type { Descriptor } from '../image/model.ts';
import { checkImages, defineFormat, jsonEntry, sortEntries, splitRepoTag } from './entries.ts';
import { IMAGE_NAME_ANNOTATION, LayoutBlobs, REF_NAME_ANNOTATION, configPlatform, layoutDescriptor, layoutFiles } from './layout.ts';
import { qualifiedTag, repoTag, tagFor, type Format, type FormatEntry, type PlanContext, type SinkImage } from './types.ts';

interface ManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

export const dockerFormat: Format = defineFormat({
  id: 'docker',
  label: 'docker save (Docker 25+)',
  description:
    'What docker save writes today: the registry’s compressed layers as they are, image digest kept; loads in Docker, Podman and skopeo.',
  needsUncompressed: false,
  multiImage: true,
  allPlatforms: false,
  async entries(images: SinkImage[], ctx: PlanContext): Promise<FormatEntry[]> {
    checkImages(this, images);
    const blobs = new LayoutBlobs(ctx);
    const descriptors: Descriptor[] = [];
    const named = new Set<string>();
    const manifest = new Map<string, ManifestEntry>();
    const repositories: Record<string, Record<string, string>> = {};
    for (const { image, reference } of images) {
      const paths = await blobs.image(image);
      let entry = manifest.get(image.digest);
      if (!entry) {
        entry = { Config: paths.config, RepoTags: [], Layers: paths.layers };
        const sources: Record<string, Descriptor> = {};
        for (const layer of image.layers)
          if (layer.diffId && isForeignLayer(layer.descriptor.mediaType)) sources[layer.diffId] = layer.descriptor;
        if (Object.keys(sources).length) entry.LayerSources = sources;
        manifest.set(image.digest, entry);
      }
      const tag = repoTag(reference, image.digest);
      const key = `${image.digest} ${tag}`;
      if (named.has(key)) continue;
      named.add(key);
      entry.RepoTags.push(tag);
      descriptors.push(
        layoutDescriptor(
          image,
          {
            [IMAGE_NAME_ANNOTATION]: qualifiedTag(reference, image.digest),
            [REF_NAME_ANNOTATION]: tagFor(reference, image.digest),
          },
          configPlatform(image),
        ),
      );
      // Docker 25 points `repositories` at the top layer's blob; only Docker ≤ 1.9 read the file.
      const top = image.layers.at(-1);
      if (top) {
        const [repo, t] = splitRepoTag(tag);
        (repositories[repo] ??= {})[t] = digestHex(top.descriptor.digest);
      }
    }
    const entries: FormatEntry[] = [...blobs.entries(), ...layoutFiles(descriptors), jsonEntry('manifest.json', [...manifest.values()])];
    if (Object.keys(repositories).length) entries.push(jsonEntry('repositories', repositories));
    return sortEntries(entries);
  },
});
