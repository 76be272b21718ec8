// The cached source: a decorator over the remote source (go-containerregistry's `cache` idea)
// that answers from manifests and configs kept from earlier pulls. A digest reference is
// content-addressed, so it resolves from the cache first with no network at all; a tag goes to the
// registry and falls back to the digest it had when the registry cannot be reached. Manifests
// and configs read back from the cache are re-hashed before use; layers stay in the BlobStore.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { sha256 } from '../digest.ts';
import { withDigest, type ImageReference } from '../reference.ts';
import { parseConfig, parseManifest } from './manifest.ts';
import type { Descriptor, Image, ImageIndex, IndexManifest, Layer, PlatformChoice, Resolved } from './model.ts';
import { formatPlatform, matchPlatform, selectablePlatforms, type Platform } from './platform.ts';
import { RemoteSource } from './remote.ts';

/** Raw manifest bytes (image manifest or index) as the registry served them. */
export interface CachedManifest {
  mediaType: string;
  bytes: Uint8Array;
}

/** What the cached source reads: the browser's image catalog, or a Map in tests. */
export interface ManifestCache {
  manifest(digest: string): Promise<CachedManifest | undefined>;
  config(digest: string): Promise<Uint8Array | undefined>;
  /** The digest `name:tag` pointed at when it was last pulled, and when. */
  tag(nameAndTag: string): Promise<{ digest: string; pulledAt: number } | undefined>;
}

/** Said once per resolve that the cache answered instead of the registry. */
export interface CacheNote {
  /** The reference as asked (canonical). */
  reference: string;
  digest: string;
  /** 'unreachable': a tag resolved from the cache because the registry could not be reached. 'digest': a digest served from the cache. */
  reason: 'unreachable' | 'digest';
  /** When the tag was recorded (ms since the epoch), for 'unreachable'. */
  cachedAt?: number;
  /** The error the registry attempt ended with, for 'unreachable'. */
  error?: { code: string; message: string };
}

/** The key a tag is kept under: 'docker.io/library/alpine:latest'. */
export function tagKey(ref: ImageReference): string | undefined {
  return ref.tag === undefined ? undefined : `${ref.name}:${ref.tag}`;
}

/**
 * Whether `err` means the registry (or the proxy's way to it) could not be reached, rather than
 * that it answered: a broken connection, the proxy's PROXY_UNREACHABLE, or a gateway error page.
 */
export function isUnreachable(err: unknown): boolean {
  const e = LongshoreError.from(err);
  if (e.code === ErrorCode.Network || e.code === ErrorCode.ProxyUnreachable) return true;
  const status = typeof e.data['status'] === 'number' ? e.data['status'] : 0;
  return (
    (e.code === ErrorCode.Http || e.code === ErrorCode.ErrorPage || e.code === ErrorCode.Registry) &&
    (status === 502 || status === 503 || status === 504)
  );
}

/** Everything a pull resolved through the source: what the catalog records once the pull succeeded. */
export interface SeenManifests {
  manifests: Map<string, CachedManifest>;
  configs: Map<string, Uint8Array>;
  /** Tags the registry itself resolved during this pull (never ones answered from the cache): key → digest. */
  tags: Map<string, string>;
  notes: CacheNote[];
}

export interface CachedSourceOptions {
  onCached?: (note: CacheNote) => void;
}

/**
 * Extends RemoteSource rather than wrapping it only because `pull` is typed with the class (its
 * #private fields make it nominal); every answer goes through `resolve`, which consults the
 * cache, then the registry. Children of an index resolve through here too.
 */
export class CachedSource extends RemoteSource {
  readonly #cache: ManifestCache;
  readonly #onCached: (note: CacheNote) => void;
  readonly seen: SeenManifests = { manifests: new Map(), configs: new Map(), tags: new Map(), notes: [] };

  constructor(remote: RemoteSource, cache: ManifestCache, options: CachedSourceOptions = {}) {
    super(remote.client);
    this.#cache = cache;
    const onCached = options.onCached ?? (() => undefined);
    this.#onCached = (note) => {
      this.seen.notes.push(note);
      onCached(note);
    };
  }

  #see(resolved: Resolved): Resolved {
    this.seen.manifests.set(resolved.digest, { mediaType: resolved.mediaType, bytes: resolved.manifestBytes });
    if (resolved.kind === 'image') this.seen.configs.set(resolved.manifest.config.digest, resolved.configBytes);
    return resolved;
  }

  override async resolve(ref: ImageReference, signal?: AbortSignal, descriptor?: Descriptor): Promise<Resolved> {
    if (ref.digest !== undefined) {
      const cached = await this.#fromCache(ref, ref.digest, descriptor);
      if (cached) {
        if (descriptor === undefined) this.#onCached({ reference: ref.canonical, digest: ref.digest, reason: 'digest' });
        return this.#see(cached);
      }
      return this.#see(await super.resolve(ref, signal, descriptor));
    }
    try {
      const resolved = this.#see(await super.resolve(ref, signal, descriptor));
      const key = tagKey(ref);
      if (key !== undefined) this.seen.tags.set(key, resolved.digest);
      return resolved;
    } catch (err) {
      if (signal?.aborted || !isUnreachable(err)) throw err;
      const key = tagKey(ref);
      const tagged = key === undefined ? undefined : await this.#cache.tag(key);
      const cached = tagged && (await this.#fromCache(withDigest(ref, tagged.digest), tagged.digest, descriptor));
      if (!tagged || !cached) throw err;
      const e = LongshoreError.from(err);
      this.#onCached({
        reference: ref.canonical,
        digest: tagged.digest,
        reason: 'unreachable',
        cachedAt: tagged.pulledAt,
        error: { code: e.code, message: e.message },
      });
      return this.#see(cached);
    }
  }

  /** The manifest `digest` (and, for an image, its config) from the cache, checked; undefined on any miss. */
  async #fromCache(ref: ImageReference, digest: string, descriptor: Descriptor | undefined): Promise<Resolved | undefined> {
    const m = await this.#cache.manifest(digest);
    if (!m || (await sha256(m.bytes)) !== digest) return undefined;
    const pinned = withDigest(ref, digest);
    const parsed = parseManifest(m.bytes, m.mediaType, `The cached manifest of ${ref.canonical}`);
    if (parsed.kind === 'index') return this.#index(pinned, parsed.mediaType, m.bytes, digest, parsed.manifest);
    const cd = parsed.manifest.config;
    const configBytes = await this.#cache.config(cd.digest);
    if (!configBytes || configBytes.byteLength !== cd.size || (await sha256(configBytes)) !== cd.digest) return undefined;
    const config = parseConfig(configBytes, parsed.manifest.layers.length);
    const count = parsed.manifest.layers.length;
    const layers: Layer[] = parsed.manifest.layers.map((d, index) => ({
      descriptor: d,
      index,
      diffId: config.rootfs.diff_ids[index],
      // Only reached when the store lacks the blob: then the registry is the one place to get it.
      open: (sig?: AbortSignal) =>
        this.client.openBlob(pinned, d, { ...(sig ? { signal: sig } : {}), label: `layer ${index + 1}/${count}` }),
    }));
    return {
      kind: 'image',
      reference: pinned,
      mediaType: parsed.mediaType,
      digest,
      manifestBytes: m.bytes,
      manifest: parsed.manifest,
      configBytes,
      config,
      layers,
      descriptor: descriptor ?? { mediaType: parsed.mediaType, digest, size: m.bytes.byteLength },
    } satisfies Image;
  }

  #index(ref: ImageReference, mediaType: string, bytes: Uint8Array, digest: string, manifest: IndexManifest): ImageIndex {
    const child = (d: Descriptor, signal?: AbortSignal): Promise<Image | ImageIndex> => this.resolve(withDigest(ref, d.digest), signal, d);
    return {
      kind: 'index',
      reference: ref,
      mediaType,
      digest,
      manifestBytes: bytes,
      manifest,
      platforms: (): PlatformChoice[] =>
        selectablePlatforms(manifest.manifests).map((c) => ({
          platform: c.platform,
          label: formatPlatform(c.platform),
          descriptor: c.descriptor,
        })),
      image: async (platform: Platform, signal?: AbortSignal): Promise<Image> => {
        const resolved = await child(matchPlatform(manifest.manifests, platform), signal);
        return resolved.kind === 'index' ? resolved.image(platform, signal) : resolved;
      },
      child,
    };
  }
}
