// What this browser can do, detected in one place, for the page to show (the workers' own
// fallbacks test the same features where they use them).

export interface Capabilities {
  /** showSaveFilePicker: a download can be written to a picked file while it streams. */
  fileSystemAccess: boolean;
  /** A Worker can start a Worker (layers then spread over several cores). */
  nestedWorkers: boolean;
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

function nestedWorkers(timeoutMs: number): Promise<boolean> {
  if (typeof Worker === 'undefined' || typeof Blob === 'undefined') return Promise.resolve(false);
  // The outer worker reports whether it could start an inner one and hear from it.
  const inner = 'postMessage(1)';
  const outer = `try { const w = new Worker(URL.createObjectURL(new Blob([${JSON.stringify(inner)}], { type: 'text/javascript' })));
    w.onmessage = () => postMessage(true); w.onerror = () => postMessage(false); } catch (e) { postMessage(false); }`;
  return new Promise<boolean>((resolve) => {
    let worker: Worker;
    try {
      worker = new Worker(URL.createObjectURL(new Blob([outer], { type: 'text/javascript' })));
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
  const [nested, idbBlobs, staging] = await Promise.all([nestedWorkers(timeoutMs), indexedDbBlobs(timeoutMs), opfsStaging(timeoutMs)]);
  return {
    fileSystemAccess: typeof (globalThis as { showSaveFilePicker?: unknown }).showSaveFilePicker === 'function',
    nestedWorkers: nested,
    decompression,
    persistentStorage: typeof navigator !== 'undefined' && typeof navigator.storage?.persist === 'function',
    serviceWorkers: typeof navigator !== 'undefined' && 'serviceWorker' in navigator,
    indexedDbBlobs: idbBlobs,
    opfsStaging: staging,
  };
}
