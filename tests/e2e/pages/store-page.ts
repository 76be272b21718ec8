// What tests/e2e/idb-store.test.ts drives inside Chromium: the real IndexedDB store and the blob
// fetch engine, exposed on `window.longshoreTest`.
import { IdbBlobStore, SEGMENT_BYTES } from '../../../src/browser/idb-store.ts';
import { createHasher, sha256 } from '../../../src/core/digest.ts';
import { fetchBlob } from '../../../src/core/http/blob-fetch.ts';
import { defaultRetryPolicy } from '../../../src/core/http/retry.ts';
import { LongshoreError } from '../../../src/core/errors.ts';
import { proxyRewrite } from '../../../src/core/http/transport.ts';
import { RemoteSource } from '../../../src/core/image/remote.ts';
import { pull } from '../../../src/core/pull.ts';
import { parseReference } from '../../../src/core/reference.ts';
import { RegistryClient } from '../../../src/core/registry/client.ts';

/** A pull in this page through the app's proxy into `store` (for the parallel-ranges benchmark). */
async function pullHere(name: string, store: IdbBlobStore, parallel?: { connections: number; threshold: number }): Promise<void> {
  const client = new RegistryClient({ transport: { fetch: (input, init) => fetch(input, init), rewrite: proxyRewrite(location.origin) } });
  await pull(new RemoteSource(client), parseReference(name), { store, ...(parallel ? { parallel } : {}) });
}

const api = { IdbBlobStore, SEGMENT_BYTES, createHasher, sha256, fetchBlob, defaultRetryPolicy, LongshoreError, pullHere };
export type StorePageApi = typeof api;
(globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest = api;
