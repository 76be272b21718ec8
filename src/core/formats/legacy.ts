// The `docker save` layout of Docker ≤ 24 (moby image/spec/v1.2.md "Combined Image JSON +
// Filesystem Changeset Format"), as crane's `--format legacy` writes it: per layer a directory
// named by its v1 id with layer.tar (uncompressed), json and VERSION; the config as
// <config-hex>.json byte-exact; manifest.json and repositories. Entries sorted, mtime 0, uid/gid 0.
// What it cannot carry: compressed layers. gzip and zstd layers alike are stored decompressed
// (pull's `uncompressed`; zstd through fzstd, see zstd.ts), so the image's manifest digest is not
// kept (the config, and so the image ID, is). Foreign (non-distributable) layers are written from
// the bytes pulled, with their original descriptors in manifest.json's LayerSources.
import { sha256, digestHex } from '../digest.ts';
import { ErrorCode, LongshoreError } from '../errors.ts';
import { isForeignLayer } from '../image/media-types.ts';
import type { HistoryEntry, Image } from '../image/model.ts';
import {
  bytesEntry,
  checkImages,
  defineFormat,
  dirEntry,
  fileEntry,
  requireLayer,
  sortEntries,
  splitRepoTag,
  uncompressedRef,
} from './entries.ts';
import { isLaterRef, repoTag, type Format, type FormatEntry, type PlanContext, type SinkImage } from './types.ts';

export { sortEntries, splitRepoTag };

const enc = new TextEncoder();

/** v1 layer id, as crane computes it: sha256("<blob hex> <parent id>[ <raw config>]"). */
async function v1Id(blobDigest: string, parent: string, rawConfig?: Uint8Array): Promise<string> {
  let s = `${digestHex(blobDigest)} ${parent}`;
  if (rawConfig) s += ` ${new TextDecoder().decode(rawConfig)}`;
  return digestHex(await sha256(enc.encode(s)));
}

/** History entries that stand for real layers (empty_layer ones describe config-only steps). */
function layerHistory(image: Image): HistoryEntry[] {
  const h = (image.config.history ?? []).filter((e) => !e.empty_layer);
  return h.length === image.layers.length ? h : image.layers.map(() => ({}));
}

export async function legacyImageEntries(
  image: Image,
  tags: string[],
  ctx: PlanContext,
): Promise<{ entries: FormatEntry[]; manifest: Record<string, unknown>; topId: string }> {
  const entries: FormatEntry[] = [];
  const configName = `${digestHex(image.manifest.config.digest)}.json`;
  entries.push(bytesEntry(configName, image.configBytes));
  const history = layerHistory(image);
  const layerPaths: string[] = [];
  const layerSources: Record<string, unknown> = {};
  let parent = '';
  for (const layer of image.layers) {
    const d = layer.descriptor;
    if (!layer.diffId) throw new LongshoreError(ErrorCode.Format, `Layer ${layer.index + 1} has no diff_id in the config.`);
    if (isForeignLayer(d.mediaType)) layerSources[layer.diffId] = d;
    const top = layer.index === image.layers.length - 1;
    const id = await v1Id(d.digest, parent, top ? image.configBytes : undefined);
    const h = history[layer.index] ?? {};
    const json: Record<string, unknown> = { id };
    if (parent) json['parent'] = parent;
    json['created'] = top ? (image.config.created ?? h.created ?? '1970-01-01T00:00:00Z') : (h.created ?? '1970-01-01T00:00:00Z');
    json['container_config'] = { Cmd: h.created_by ? [h.created_by] : null };
    if (h.author) json['author'] = h.author;
    if (h.comment) json['comment'] = h.comment;
    if (top) {
      if (image.config.architecture) json['architecture'] = image.config.architecture;
      if (image.config.os) json['os'] = image.config.os;
      if (image.config.variant) json['variant'] = image.config.variant;
      if (image.config.config) json['config'] = image.config.config;
    }
    await requireLayer(ctx, d, layer.diffId, `uncompressed layer ${layer.index + 1}`, 'docker save (legacy)');
    const ref = await uncompressedRef(ctx, layer.diffId, `uncompressed layer ${layer.index + 1}`);
    entries.push(dirEntry(id));
    entries.push(bytesEntry(`${id}/VERSION`, enc.encode('1.0')));
    entries.push(bytesEntry(`${id}/json`, enc.encode(JSON.stringify(json))));
    entries.push(fileEntry(`${id}/layer.tar`, ref, isLaterRef(ref) ? 0 : ref.size));
    layerPaths.push(`${id}/layer.tar`);
    parent = id;
  }
  const manifest: Record<string, unknown> = { Config: configName, RepoTags: tags, Layers: layerPaths };
  if (Object.keys(layerSources).length) manifest['LayerSources'] = layerSources;
  return { entries, manifest, topId: parent };
}

export const legacyFormat: Format = defineFormat({
  id: 'legacy',
  label: 'docker save (legacy)',
  description:
    'The classic docker save layout of Docker 24 and older, with uncompressed layers: loads in any Docker version and in Podman, but the image digest changes.',
  needsUncompressed: true,
  multiImage: true,
  allPlatforms: false,
  async entries(images: SinkImage[], ctx: PlanContext): Promise<FormatEntry[]> {
    checkImages(this, images);
    const entries: FormatEntry[] = [];
    const manifests: Record<string, unknown>[] = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const { image, reference } of images) {
      const tag = repoTag(reference, image.digest);
      const r = await legacyImageEntries(image, [tag], ctx);
      entries.push(...r.entries);
      manifests.push(r.manifest);
      const [repo, t] = splitRepoTag(tag);
      (repositories[repo] ??= {})[t] = r.topId;
    }
    entries.push(bytesEntry('manifest.json', enc.encode(JSON.stringify(manifests))));
    entries.push(bytesEntry('repositories', enc.encode(JSON.stringify(repositories))));
    return sortEntries(entries);
  },
});
