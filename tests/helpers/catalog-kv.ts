// The image catalog's key-value verbs over a Map, for tests in Node (idb-keyval's in the page).
import type { CatalogKV } from '../../src/browser/image-catalog.ts';

/** The catalog's key-value verbs over a Map (idb-keyval's in the page). */
export function mapKV(): CatalogKV & { map: Map<string, unknown> } {
  const map = new Map<string, unknown>();
  return {
    map,
    get: async <T>(k: string) => map.get(k) as T | undefined,
    getMany: async <T>(ks: string[]) => ks.map((k) => map.get(k) as T | undefined),
    set: async (k, v) => void map.set(k, structuredClone(v)),
    setMany: async (entries) => entries.forEach(([k, v]) => map.set(k, structuredClone(v))),
    del: async (k) => void map.delete(k),
    delMany: async (ks) => ks.forEach((k) => map.delete(k)),
    keys: async () => [...map.keys()],
  };
}
