// What this browser can do, detected in one place: the page shows it, and the workers' fallbacks
// follow it. Also the one start-up step storage needs before any worker touches it.

/**
 * Create the blob database from the page before any worker opens it. In Firefox ESR 153 the
 * watchdog caught the pull worker's first IndexedDB request on a fresh page (the sweep before the
 * first pull) left unanswered, about one fresh page in ten to twenty; a database the page has
 * already made is a suspected trigger removed, not a proven fix (40 fresh pages passed with and
 * without it). Bounded: a browser without IndexedDB, or one that never answers, does not hold up the page.
 */
export async function prepareStorage(dbName = 'longshore', storeName = 'blobs', timeoutMs = 5000): Promise<boolean> {
  if (typeof indexedDB === 'undefined') return false;
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    let request: IDBOpenDBRequest;
    try {
      request = indexedDB.open(dbName);
    } catch {
      clearTimeout(timer);
      return resolve(false);
    }
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
    };
    request.onsuccess = () => {
      clearTimeout(timer);
      request.result.close();
      resolve(true);
    };
    request.onerror = () => {
      clearTimeout(timer);
      resolve(false);
    };
  });
}
