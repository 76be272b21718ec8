// What this browser can do, detected in one place, for the page to show (the workers' own
// fallbacks test the same features where they use them).

export interface Capabilities {
  /** showSaveFilePicker: a download can be written to a picked file while it streams. */
  fileSystemAccess: boolean;
  /**
   * The page can start the layer workers it hands the pull worker (layer-host.ts), so layers
   * spread over several cores. Not probed by starting a worker from a worker: Firefox under
   * WebDriver BiDi sometimes never returns from that (README, "Browser support").
   */
  layerWorkers: boolean;
  /** DecompressionStream formats the engine decodes natively (the rest fall back to JS). */
  decompression: string[];
  /** navigator.storage.persist exists (the cache can be kept from eviction). */
  persistentStorage: boolean;
  serviceWorkers: boolean;
  /** IndexedDB keeps Blobs (WebKit's ephemeral sessions do not: segments go in as ArrayBuffers). */
  indexedDbBlobs: boolean;
  /** A dedicated worker can write OPFS files through sync access handles (the store stages bytes there). */
  opfsStaging: boolean;
}

const FORMATS = ['gzip', 'deflate', 'deflate-raw', 'zstd'];

/** Like opfs-staging.ts's probe, in a throwaway worker (sync access handles exist only in dedicated workers). */
function opfsStaging(timeoutMs: number): Promise<boolean> {
  if (typeof Worker === 'undefined' || typeof Blob === 'undefined') return Promise.resolve(false);
  const probe = `(async () => { const root = await navigator.storage.getDirectory();
    const name = 'probe-' + Math.random().toString(36).slice(2); const h = await root.getFileHandle(name, { create: true });
    (await h.createSyncAccessHandle()).close(); await root.removeEntry(name); return true; })().then(postMessage, () => postMessage(false));`;
  return new Promise<boolean>((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(URL.createObjectURL(new Blob([probe], { type: 'text/javascript' })));
    } catch {
      return resolve(false);
    }
    const done = (v: boolean) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    worker.onmessage = (e) => done(e.data === true);
    worker.onerror = (e) => {
      e.preventDefault();
      done(false);
    };
  });
}

function indexedDbBlobs(timeoutMs: number): Promise<boolean> {
  if (typeof indexedDB === 'undefined') return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    const finish = (v: boolean) => {
      clearTimeout(timer);
      resolve(v);
    };
    const open = indexedDB.open('longshore-probe');
    open.onupgradeneeded = () => open.result.createObjectStore('p');
    open.onerror = () => finish(false);
    open.onsuccess = () => {
      const db = open.result;
      try {
        const tx = db.transaction('p', 'readwrite');
        tx.objectStore('p').put(new Blob([new Uint8Array(1)]), 'b');
        tx.oncomplete = () => {
          db.close();
          finish(true);
        };
        tx.onabort = tx.onerror = () => {
          db.close();
          finish(false);
        };
      } catch {
        db.close();
        finish(false);
      }
    };
  });
}

/** Detect what this browser offers; each probe is bounded. */
export async function detectCapabilities(timeoutMs = 3000): Promise<Capabilities> {
  const decompression = FORMATS.filter((f) => {
    try {
      new DecompressionStream(f as CompressionFormat);
      return true;
    } catch {
      return false;
    }
  });
  const [idbBlobs, staging] = await Promise.all([indexedDbBlobs(timeoutMs), opfsStaging(timeoutMs)]);
  return {
    fileSystemAccess: typeof (globalThis as { showSaveFilePicker?: unknown }).showSaveFilePicker === 'function',
    layerWorkers: typeof Worker !== 'undefined' && typeof MessageChannel !== 'undefined',
    decompression,
    persistentStorage: typeof navigator !== 'undefined' && typeof navigator.storage?.persist === 'function',
    // As save/choose.ts decides: registration needs a secure context (Service Workers §2.1).
    serviceWorkers:
      typeof navigator !== 'undefined' && 'serviceWorker' in navigator && typeof isSecureContext !== 'undefined' && isSecureContext,
    indexedDbBlobs: idbBlobs,
    opfsStaging: staging,
  };
}
