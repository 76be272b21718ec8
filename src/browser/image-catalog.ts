// The image catalog: which images the blob cache holds, for the storage panel, offline pulls and
// eviction. Kept in its own IndexedDB database ('longshore-catalog'), beside the blob store:
//   image:<manifest digest> → ImageRecord       manifest:<digest> → raw manifest or index bytes
//   config:<digest>         → raw config bytes    tag:<name:tag>    → the digest it last resolved to
// Blobs are only ever listed and deleted through the BlobStore's public methods.
import { createStore, del, delMany, get, getMany, keys, set, setMany } from 'idb-keyval';
import type { CachedManifest, ManifestCache, SeenManifests } from '../core/image/cached-source.ts';
import type { Image } from '../core/image/model.ts';
import { configPlatformLabel } from '../core/image/platform.ts';
import type { PulledIndex } from '../core/pull.ts';
import type { BlobStore } from '../core/store/blob-store.ts';

/** The few key-value verbs the catalog needs (idb-keyval's, or a Map in tests). */
export interface CatalogKV {
  get<T>(key: string): Promise<T | undefined>;
  getMany<T>(keys: string[]): Promise<(T | undefined)[]>;
  set(key: string, value: unknown): Promise<void>;
  setMany(entries: [string, unknown][]): Promise<void>;
  del(key: string): Promise<void>;
  delMany(keys: string[]): Promise<void>;
  keys(): Promise<string[]>;
}

export function idbCatalogKV(dbName = 'longshore-catalog'): CatalogKV {
  const db = createStore(dbName, 'catalog');
  return {
    get: (k) => get(k, db),
    getMany: (ks) => getMany(ks, db),
    set: (k, v) => set(k, v, db),
    setMany: (entries) => setMany(entries, db),
    del: (k) => del(k, db),
    delMany: (ks) => delMany(ks, db),
    keys: async () => (await keys(db)).map(String),
  };
}

/** The blob store as the catalog uses it: its public listing and delete. */
export type ListableStore = BlobStore & { list(): Promise<{ key: string; size: number }[]> };

export interface ImageRecord {
  /** The image manifest's digest; one record per image, whatever names reached it. */
  digest: string;
  /** The name as typed most recently, and every name typed for it. */
  name: string;
  names: string[];
  /** Canonical name pinned to the digest: 'docker.io/library/alpine:3@sha256:…'. */
  canonical: string;
  /** The index it was chosen from, if any. */
  indexDigest?: string;
  platform?: string;
  mediaType: string;
  configDigest: string;
  /** Each layer: compressed digest and size, and its diff_id. */
  layers: { digest: string; size: number; diffId?: string }[];
  /** Store keys this image uses (compressed layers and/or uncompressed copies) that were present when it was recorded. */
  blobs: { key: string; size: number }[];
  pulledAt: number;
  lastUsed: number;
}

/** Which formats the cache can rebuild offline for an image. */
export type OfflineFormats = 'all' | 'uncompressed-only' | 'none';

/** compressed layers rebuild docker/oci/tarball byte-exact; legacy needs the uncompressed copies (decompressed from the compressed ones, offline too). */
export function offlineFormats(record: ImageRecord, keys: ReadonlySet<string>): OfflineFormats {
  if (record.layers.every((l) => keys.has(l.digest))) return 'all';
  if (record.layers.every((l) => keys.has(l.diffId ?? l.digest))) return 'uncompressed-only';
  return 'none';
}

export interface PulledImage {
  /** The name as typed. */
  typed: string;
  image: Image;
  index?: PulledIndex;
}

export interface CatalogView {
  images: (ImageRecord & { size: number; offline: OfflineFormats })[];
  /** Store keys used by more than one image, with the images that use them. */
  shared: { key: string; size: number; users: string[] }[];
  /** Bytes of every blob in the store (catalogued or not). */
  storeBytes: number;
  /** Blobs in the store no catalogued image uses (from pulls before the catalog, or failed ones). */
  orphanBytes: number;
  budget: number | undefined;
}

const IMAGE = 'image:';
const BUDGET_KEY = 'setting:budget';

export class ImageCatalog implements ManifestCache {
  constructor(
    readonly kv: CatalogKV = idbCatalogKV(),
    private readonly now: () => number = () => Date.now(),
  ) {}

  manifest(digest: string): Promise<CachedManifest | undefined> {
    return this.kv.get<CachedManifest>(`manifest:${digest}`);
  }

  config(digest: string): Promise<Uint8Array | undefined> {
    return this.kv.get<Uint8Array>(`config:${digest}`);
  }

  tag(nameAndTag: string): Promise<{ digest: string; pulledAt: number } | undefined> {
    return this.kv.get(`tag:${nameAndTag}`);
  }

  async images(): Promise<ImageRecord[]> {
    const ks = (await this.kv.keys()).filter((k) => k.startsWith(IMAGE));
    return (await this.kv.getMany<ImageRecord>(ks)).filter((r): r is ImageRecord => r !== undefined);
  }

  async budget(): Promise<number | undefined> {
    return this.kv.get<number>(BUDGET_KEY);
  }

  async setBudget(bytes: number | undefined): Promise<void> {
    if (bytes === undefined || !Number.isFinite(bytes) || bytes <= 0) await this.kv.del(BUDGET_KEY);
    else await this.kv.set(BUDGET_KEY, Math.floor(bytes));
  }

  /**
   * After a successful pull: one record per image pulled (every child of a pulled index too),
   * with the manifests, configs and tags the pull resolved. Returns the digests recorded.
   */
  async recordPull(seen: SeenManifests, pulled: PulledImage[], store: BlobStore): Promise<string[]> {
    const t = this.now();
    const indexOf = new Map<string, string>();
    for (const [digest, m] of seen.manifests) {
      if (!m.mediaType.includes('index') && !m.mediaType.includes('list')) continue;
      try {
        const idx = JSON.parse(new TextDecoder().decode(m.bytes)) as { manifests?: { digest?: string }[] };
        for (const c of idx.manifests ?? []) if (typeof c.digest === 'string' && !indexOf.has(c.digest)) indexOf.set(c.digest, digest);
      } catch {
        // Unreadable bytes were already refused by the parser; nothing to link.
      }
    }
    const entries: [string, unknown][] = [];
    for (const [digest, m] of seen.manifests) entries.push([`manifest:${digest}`, { mediaType: m.mediaType, bytes: m.bytes.slice() }]);
    // Copies: a view would take its whole underlying buffer into IndexedDB with it.
    for (const [digest, bytes] of seen.configs) entries.push([`config:${digest}`, bytes.slice()]);
    for (const [key, digest] of seen.tags) entries.push([`tag:${key}`, { digest, pulledAt: t }]);
    const recorded: string[] = [];
    for (const p of pulled) {
      for (const image of p.index ? [p.image, ...p.index.children.filter((c) => c.digest !== p.image.digest)] : [p.image]) {
        const old = await this.kv.get<ImageRecord>(IMAGE + image.digest);
        const blobs: { key: string; size: number }[] = [];
        for (const l of image.layers) {
          for (const key of new Set([l.descriptor.digest, l.diffId ?? l.descriptor.digest])) {
            const size = await store.size(key);
            if (size !== undefined) blobs.push({ key, size });
          }
        }
        const indexDigest = p.index?.index.digest ?? indexOf.get(image.digest);
        const platform = configPlatformLabel(image.config);
        const record: ImageRecord = {
          digest: image.digest,
          name: p.typed,
          names: [...new Set([p.typed, ...(old?.names ?? [])])],
          canonical: image.reference.canonical,
          ...(indexDigest ? { indexDigest } : {}),
          ...(platform ? { platform } : {}),
          mediaType: image.mediaType,
          configDigest: image.manifest.config.digest,
          layers: image.layers.map((l) => ({
            digest: l.descriptor.digest,
            size: l.descriptor.size,
            ...(l.diffId ? { diffId: l.diffId } : {}),
          })),
          blobs,
          pulledAt: old && seen.notes.some((n) => n.digest === image.digest || n.digest === indexDigest) ? old.pulledAt : t,
          lastUsed: t,
        };
        entries.push([IMAGE + image.digest, record]);
        // The manifest and config of every recorded image, even when resolved via a path the source did not see.
        entries.push([
          `manifest:${image.digest}`,
          { mediaType: image.mediaType, bytes: image.manifestBytes.slice() } satisfies CachedManifest,
        ]);
        entries.push([`config:${image.manifest.config.digest}`, image.configBytes.slice()]);
        recorded.push(image.digest);
      }
    }
    await this.kv.setMany(entries);
    return recorded;
  }

  /** What the storage panel shows. */
  async view(store: ListableStore): Promise<CatalogView> {
    const [records, listed, budget] = await Promise.all([this.images(), store.list(), this.budget()]);
    const sizes = new Map(listed.map((b) => [b.key, b.size]));
    const present = new Set(sizes.keys());
    const users = new Map<string, string[]>();
    for (const r of records) for (const b of r.blobs) users.set(b.key, [...(users.get(b.key) ?? []), r.digest]);
    const images = records
      .map((r) => {
        const live = r.blobs.filter((b) => present.has(b.key));
        return { ...r, blobs: live, size: live.reduce((n, b) => n + b.size, 0), offline: offlineFormats(r, present) };
      })
      .sort((a, b) => b.lastUsed - a.lastUsed);
    const shared = [...users]
      .filter(([k, u]) => u.length > 1 && present.has(k))
      .map(([key, u]) => ({ key, size: sizes.get(key)!, users: u }));
    const storeBytes = listed.reduce((n, b) => n + b.size, 0);
    const orphanBytes = listed.filter((b) => !users.has(b.key)).reduce((n, b) => n + b.size, 0);
    return { images, shared, storeBytes, orphanBytes, budget };
  }

  /**
   * Forget an image and delete its blobs, except those another image still uses (and those in
   * `protect`); its manifest, config and tags go when nothing else needs them.
   */
  async deleteImage(digest: string, store: BlobStore, protect: ReadonlySet<string> = new Set()): Promise<string[]> {
    const records = await this.images();
    const target = records.find((r) => r.digest === digest);
    if (!target) return [];
    const others = records.filter((r) => r.digest !== digest);
    const kept = new Set([...protect, ...others.flatMap((r) => r.blobs.map((b) => b.key))]);
    const deleted: string[] = [];
    for (const b of target.blobs) {
      if (kept.has(b.key)) continue;
      await store.delete(b.key);
      deleted.push(b.key);
    }
    const drop = [IMAGE + digest, `manifest:${digest}`];
    if (!others.some((r) => r.configDigest === target.configDigest)) drop.push(`config:${target.configDigest}`);
    const indexGone = target.indexDigest !== undefined && !others.some((r) => r.indexDigest === target.indexDigest);
    if (indexGone) drop.push(`manifest:${target.indexDigest}`);
    const tagKeys = (await this.kv.keys()).filter((k) => k.startsWith('tag:'));
    const tags = await this.kv.getMany<{ digest: string }>(tagKeys);
    tagKeys.forEach((k, i) => {
      const d = tags[i]?.digest;
      if (d === digest || (indexGone && d === target.indexDigest)) drop.push(k);
    });
    await this.kv.delMany(drop);
    return deleted;
  }

  /** Every image and every blob in the store, catalogued or not. */
  async clear(store: ListableStore): Promise<void> {
    for (const b of await store.list()) await store.delete(b.key);
    await this.kv.delMany((await this.kv.keys()).filter((k) => k !== BUDGET_KEY));
  }

  /**
   * Least-recently-used eviction: while the store holds more than `limit` bytes, delete whole
   * images, least recently used first, except the images in `keep` (the pull in progress); a
   * blob in `protect` (that pull's) is never deleted, even when an evicted image used it too.
   * Returns the digests evicted.
   */
  async evict(store: ListableStore, limit: number, protect: ReadonlySet<string>, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
    let total = (await store.list()).reduce((n, b) => n + b.size, 0);
    if (total <= limit) return [];
    const evicted: string[] = [];
    const candidates = (await this.images()).filter((r) => !keep.has(r.digest)).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const r of candidates) {
      if (total <= limit) break;
      await this.deleteImage(r.digest, store, protect);
      total = (await store.list()).reduce((n, b) => n + b.size, 0);
      evicted.push(r.digest);
    }
    return evicted;
  }
}

/** The share of the browser's quota the cache may fill before eviction starts, without a budget set. */
export const DEFAULT_QUOTA_SHARE = 0.8;

/**
 * The end of a successful pull: record what it pulled, then evict least-recently-used images if
 * the cache is over its budget (the configured one, else a share of what the browser allows).
 */
export async function recordAndEvict(
  catalog: ImageCatalog,
  seen: SeenManifests,
  pulled: PulledImage[],
  store: ListableStore,
  storage?: { estimate(): Promise<StorageEstimate> },
): Promise<string[]> {
  const recorded = await catalog.recordPull(seen, pulled, store);
  const protect = new Set(
    pulled.flatMap((p) =>
      [p.image, ...(p.index?.children ?? [])].flatMap((i) =>
        i.layers.flatMap((l) => [l.descriptor.digest, l.diffId ?? l.descriptor.digest]),
      ),
    ),
  );
  let limit = await catalog.budget();
  if (limit === undefined && storage) {
    const { quota, usage } = await storage.estimate().catch(() => ({ quota: undefined, usage: undefined }));
    if (quota && usage !== undefined) {
      const cache = (await store.list()).reduce((n, b) => n + b.size, 0);
      limit = Math.max(0, quota * DEFAULT_QUOTA_SHARE - (usage - cache));
    }
  }
  if (limit === undefined) return [];
  return catalog.evict(store, limit, protect, new Set(recorded));
}

/** The catalog and blob cache as the page's storage panel sees them. */
export interface StorageService {
  view(): Promise<CatalogView>;
  deleteImage(digest: string): Promise<void>;
  clear(): Promise<void>;
  setBudget(bytes: number | undefined): Promise<void>;
  estimate(): Promise<{ usage?: number; quota?: number } | undefined>;
  persisted(): Promise<boolean | undefined>;
  persist(): Promise<boolean | undefined>;
}

export function browserStorageService(
  catalog: ImageCatalog,
  store: ListableStore,
  storage: StorageManager | undefined = globalThis.navigator?.storage,
): StorageService {
  return {
    view: () => catalog.view(store),
    deleteImage: async (digest) => void (await catalog.deleteImage(digest, store)),
    clear: () => catalog.clear(store),
    setBudget: (bytes) => catalog.setBudget(bytes),
    estimate: async () => (storage?.estimate ? storage.estimate() : undefined),
    persisted: async () => (storage?.persisted ? storage.persisted() : undefined),
    persist: async () => (storage?.persist ? storage.persist() : undefined),
  };
}
