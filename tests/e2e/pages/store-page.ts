// What tests/e2e/idb-store.test.ts drives inside Chromium: the real IndexedDB store and the blob
// fetch engine, exposed on `window.longshoreTest`.
import { IdbBlobStore, SEGMENT_BYTES } from '../../../src/browser/idb-store.ts';
import { createHasher, sha256 } from '../../../src/core/digest.ts';
import { fetchBlob } from '../../../src/core/http/blob-fetch.ts';
import { defaultRetryPolicy } from '../../../src/core/http/retry.ts';
import { LongshoreError } from '../../../src/core/errors.ts';

const api = { IdbBlobStore, SEGMENT_BYTES, createHasher, sha256, fetchBlob, defaultRetryPolicy, LongshoreError };
export type StorePageApi = typeof api;
(globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest = api;
