// Reads the page's blob cache (IndexedDB 'longshore', store 'blobs', see src/browser/idb-store.ts)
// from an e2e test without creating it: opening a database that does not exist yet would create
// an empty one and break the app's own upgrade.
import type { Page } from 'playwright-core';
import type { E2EPage } from './e2e.ts';

export interface CacheContents {
  /** IndexedDB keys, plus `file:<name>` for each file the layer workers staged in OPFS (`longshore-inflight/longshore/`). */
  keys: string[];
  /**
   * `seg:` keys and `file:` entries that neither a `blob:` record nor a `part:` record (an
   * unfinished download kept for resume) lists: what a cancelled or failed download must not leave.
   */
  orphans: string[];
}

/** `page`: a Playwright page or the driver-neutral E2EPage (the function runs in the page either way). */
export function cacheContents(page: Page | E2EPage): Promise<CacheContents> {
  const evaluate = page.evaluate as (fn: () => Promise<CacheContents>) => Promise<CacheContents>;
  return evaluate.call(page, async () => {
    const files: string[] = [];
    try {
      const root = await navigator.storage.getDirectory();
      const dir = await (await root.getDirectoryHandle('longshore-inflight')).getDirectoryHandle('longshore');
      for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) files.push(`file:${name}`);
    } catch {
      // No staging directory (nothing staged, or no OPFS here).
    }
    const names = (await indexedDB.databases()).map((d) => d.name);
    if (!names.includes('longshore')) return { keys: files, orphans: files };
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('longshore');
      open.onerror = () => reject(open.error);
      open.onsuccess = () => resolve(open.result);
    });
    try {
      if (!db.objectStoreNames.contains('blobs')) return { keys: files, orphans: files };
      const store = db.transaction('blobs', 'readonly').objectStore('blobs');
      const request = <T>(r: IDBRequest<T>) =>
        new Promise<T>((resolve, reject) => {
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
      const [keys, values] = await Promise.all([request(store.getAllKeys()), request(store.getAll())]);
      const live = new Set<string>();
      keys.forEach((k, i) => {
        if (!String(k).startsWith('blob:') && !String(k).startsWith('part:')) return;
        const record = values[i] as { segments?: string[]; file?: string };
        for (const s of record.segments ?? []) live.add(s);
        if (record.file) live.add(`file:${record.file}`);
      });
      const all = [...keys.map(String), ...files];
      return { keys: all, orphans: all.filter((k) => (k.startsWith('seg:') || k.startsWith('file:')) && !live.has(k)) };
    } finally {
      db.close();
    }
  });
}
