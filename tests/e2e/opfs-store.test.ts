// Bytes staged in the origin private file system, in Chromium: the real store in a dedicated worker
// of the app's origin (tests/e2e/pages/staging-worker.ts) writes a partial through a sync access
// handle, commits it (the record names the file, the bytes read back exact, deleting removes it),
// continues it in a new worker after the first was terminated mid-blob (from the checkpoint, the
// file cut back to it), sweeps orphaned files but not those of a key being written, and falls back
// to IndexedDB segments where OPFS is refused. Then the app: a pull that keeps no copy leaves
// nothing in IndexedDB nor in OPFS, and a reloaded pull's partial is an OPFS file.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { bundleForPage } from '../helpers/page-bundle.ts';
import { validateFixtureArchive } from '../helpers/validate.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';
import type { StagingOps } from './pages/staging-worker.ts';

const env = inject('registryEnv');
const KiB = 1024;
let browser: Browser;
let server: RunningServer;
let bundle: string;
let dir: string;
let dbCount = 0;

beforeAll(async () => {
  [bundle, server, browser, dir] = await Promise.all([
    bundleForPage(resolve(import.meta.dirname, 'pages/staging-worker.ts')),
    startAppServer([env.anon.host]),
    launchChromium(),
    mkdtemp(join(tmpdir(), 'longshore-e2e-opfs-')),
  ]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openPage(): Promise<Page> {
  const page = await (await browser.newContext({ acceptDownloads: true })).newPage();
  await page.goto(server.url);
  return page;
}

/** Starts the staging worker in `page`; its handle is kept on the page under `name`. */
async function startWorker(page: Page, name: string): Promise<void> {
  await page.evaluate(
    async ([code, n]) => {
      const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
      const worker = new Worker(url, { type: 'module' });
      await new Promise<void>((ready, fail) => {
        worker.onmessage = (e: MessageEvent<{ ready?: boolean }>) => (e.data.ready ? ready() : undefined);
        worker.onerror = (e) => fail(new Error(e.message));
      });
      (globalThis as unknown as Record<string, Worker>)[n] = worker;
    },
    [bundle, name] as const,
  );
}

async function call<K extends keyof StagingOps>(
  page: Page,
  name: string,
  op: K,
  ...args: Parameters<StagingOps[K]>
): Promise<Awaited<ReturnType<StagingOps[K]>>> {
  const reply = await page.evaluate(
    ([n, o, a]) => {
      const worker = (globalThis as unknown as Record<string, Worker>)[n]!;
      const id = Math.random();
      return new Promise<{ ok: boolean; value?: unknown; error?: string }>((done) => {
        worker.addEventListener('message', function on(e: MessageEvent<{ id?: number; ok: boolean }>) {
          if (e.data.id !== id) return;
          worker.removeEventListener('message', on);
          done(e.data);
        });
        worker.postMessage({ id, op: o, args: a });
      });
    },
    [name, op, args] as const,
  );
  if (!reply.ok) throw new Error(`${op} in the worker: ${reply.error}`);
  return reply.value as Awaited<ReturnType<StagingOps[K]>>;
}

/** Files under OPFS `longshore-inflight/<db>/`, read from the page with the async API. */
function stagedFiles(page: Page, db = 'longshore'): Promise<string[]> {
  return page.evaluate(async (name) => {
    try {
      const root = await navigator.storage.getDirectory();
      const d = await (await root.getDirectoryHandle('longshore-inflight')).getDirectoryHandle(encodeURIComponent(name));
      const out: string[] = [];
      for await (const n of (d as unknown as { keys(): AsyncIterable<string> }).keys()) out.push(n);
      return out;
    } catch {
      return [];
    }
  }, db);
}

function idbKeys(page: Page, db = 'longshore'): Promise<string[]> {
  return page.evaluate(
    (name) =>
      new Promise<string[]>((resolveKeys, reject) => {
        const open = indexedDB.open(name);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          if (!open.result.objectStoreNames.contains('blobs')) return resolveKeys([]);
          const req = open.result.transaction('blobs', 'readonly').objectStore('blobs').getAllKeys();
          req.onsuccess = () => resolveKeys(req.result.map(String));
          req.onerror = () => reject(req.error);
        };
      }),
    db,
  );
}

/** The archive of the v2s2 fixture pulled as `name`, judged by skopeo and GNU tar. */
const validateV2s2 = (file: string, name: string) => validateFixtureArchive(env, 'v2s2', file, name);

describe('the store staging bytes in OPFS (a dedicated worker)', () => {
  it('a partial written through a sync access handle becomes the blob: the record names its file, the bytes read back exact, delete removes both', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const size = 3 * 1024 * KiB + 123;
    const r = await call(page, 'w', 'commit', db, size);
    expect(r.staged).toBe(true);
    // While written: one `.part` file (no IndexedDB segment).
    expect(Object.keys(r.during)).toHaveLength(1);
    expect(Object.keys(r.during)[0]).toMatch(/\.part$/);
    const record = r.after.records[`blob:${r.key}`] as { size: number; segments: string[]; file?: string };
    expect(record).toMatchObject({ size, segments: [], file: Object.keys(r.during)[0] });
    expect(Object.keys(r.after.records).filter((k) => k.startsWith('seg:') || k.startsWith('part:'))).toEqual([]);
    expect(r.after.files).toEqual({ [record.file!]: size });
    expect(r.after).toMatchObject({ has: true, size, read: r.key });
    expect(r.deleted).toEqual({ records: {}, files: {} });
    await page.context().close();
  });

  it('the same blob stored twice (two layers with one diff_id): a Blob of the first copy stays readable, one file is kept', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const r = await call(page, 'w', 'twice', db, 2 * 1024 * KiB + 7);
    expect(r.read).toBe(r.key);
    expect(r.again).toBe(r.key);
    expect(Object.keys(r.files)).toHaveLength(1);
    await page.context().close();
  });

  it('a worker terminated mid-blob: a new one continues from the checkpoint (file cut back to it, hasher state restored) and the blob verifies', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    const size = 2 * 1024 * KiB;
    const upto = 700 * KiB;
    const extra = 200 * KiB;
    await startWorker(page, 'first');
    const stalled = await call(page, 'first', 'stall', db, size, upto, extra);
    expect((stalled.records[`part:${stalled.key}`] as { done: number; file?: string }).file).toMatch(/\.part$/);
    // The page goes away mid-write: the worker dies with its sync access handle open.
    await page.evaluate(() => (globalThis as unknown as Record<string, Worker>)['first']!.terminate());
    await startWorker(page, 'second');
    const resumed = await call(page, 'second', 'resume', db, size);
    // From the last checkpoint: `upto`, or `upto + extra` if a later one landed before the end.
    expect([upto, upto + extra]).toContain(resumed.offset);
    expect(resumed.listed).toEqual([expect.objectContaining({ key: stalled.key, done: resumed.offset, total: size })]);
    expect(resumed.fileSize).toBe(resumed.offset);
    expect(resumed.digest).toBe(stalled.key);
    expect(resumed.read).toBe(stalled.key);
    expect(Object.keys(resumed.records).filter((k) => k.startsWith('part:'))).toEqual([]);
    await page.context().close();
  });

  it('sweep removes a staged file no record points to, but not one whose key is being written', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const r = await call(page, 'w', 'sweep', db);
    const owned = (key: string) => (name: string) => name.startsWith(`${encodeURIComponent(key)}~`);
    expect(Object.keys(r.before).filter(owned(r.free))).toHaveLength(1);
    expect(Object.keys(r.before).filter(owned(r.busy))).toHaveLength(1);
    expect(r.removed).toBe(1);
    expect(Object.keys(r.whileHeld)).toEqual(Object.keys(r.before).filter(owned(r.busy)));
    expect(r.removedAfter).toBe(1);
    expect(r.after).toEqual({});
    await page.context().close();
  });

  it('an open of a staged file that the browser never answers is given up and another file opened; the late answer is closed and removed', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const size = 1024 * KiB + 9;
    const r = await call(page, 'w', 'hungOpen', db, size, 2, 300);
    expect(r.outcome).toBe('stored');
    // Three names: two given up, the third stored.
    expect(r.tried).toHaveLength(3);
    expect(new Set(r.tried).size).toBe(3);
    expect(r.read).toBe(r.key);
    // Only the stored blob's file is left once the late opens answered.
    expect(Object.keys(r.after)).toEqual([r.tried[2]]);
    await page.context().close();
  });

  it('opens that never answer, every attempt: put() fails with a retryable storage error, nothing is stored or left open', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const r = await call(page, 'w', 'hungOpen', db, 4 * KiB, 3, 200);
    expect(r.outcome).toMatch(/^STORE: The browser did not open a file in its private storage within 200 ms, 3 times\./);
    expect(r.read).toBeUndefined();
    expect(r.after).toEqual({});
    await page.context().close();
  });

  it('a spill read range after range while it is written comes back exact, through one buffer', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const r = await call(page, 'w', 'spillReads', db, 3 * 1024 * KiB + 17, 12);
    expect(r.exact).toBe(true);
    expect(r.buffers).toBe(1);
    await page.context().close();
  });

  it('OPFS refused (getDirectory throws): the store keeps IndexedDB segments, and nothing is staged', async () => {
    const page = await openPage();
    const db = `opfs-${++dbCount}`;
    await startWorker(page, 'w');
    const size = 1024 * KiB + 5;
    const r = await call(page, 'w', 'refused', db, size);
    expect(r.staged).toBe(false);
    const record = r.after.records[`blob:${r.key}`] as { size: number; segments: string[]; file?: string };
    expect(record.file).toBeUndefined();
    expect(record.segments.length).toBeGreaterThan(0);
    for (const s of record.segments) expect(r.after.records[s]).toBe('Blob');
    expect(r.after).toMatchObject({ has: true, size, read: r.key });
    expect(await stagedFiles(page, db)).toEqual([]);
    await page.context().close();
  });
});

describe('the app', () => {
  it('keep a copy on: the layer workers stage each blob in OPFS and its record names the file', async () => {
    const page = await openPage();
    const name = `${env.anon.host}/test/v2s2:latest`;
    await page.getByLabel('Image', { exact: true }).fill(name);
    await page.getByLabel('Save to').selectOption('blob');
    await page.getByRole('button', { name: 'Pull', exact: true }).click();
    const button = page.getByTestId('download');
    await button.waitFor({ timeout: 60_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), button.click()]);
    const file = join(dir, 'keep.tar');
    await download.saveAs(file);
    await validateV2s2(file, name);
    const staged = await stagedFiles(page);
    const records = await page.evaluate(
      () =>
        new Promise<Record<string, { file?: string }>>((done, fail) => {
          const open = indexedDB.open('longshore');
          open.onerror = () => fail(open.error);
          open.onsuccess = () => {
            const store = open.result.transaction('blobs', 'readonly').objectStore('blobs');
            const keys = store.getAllKeys();
            const values = store.getAll();
            values.onsuccess = () =>
              done(Object.fromEntries(keys.result.map((k, i) => [String(k), values.result[i] as { file?: string }])));
          };
        }),
    );
    for (const layer of JSON.parse(env.fixtures.v2s2.manifest.raw).layers as { digest: string }[]) {
      const record = records[`blob:${layer.digest}`];
      expect(record?.file, layer.digest).toMatch(/\.part$/);
      expect(staged).toContain(record!.file);
    }
    await page.context().close();
  });

  it('keep a copy off: the archive is complete, and neither IndexedDB nor OPFS holds anything after the pull', async () => {
    const context = await browser.newContext({ acceptDownloads: true });
    // The picker answers with a file of the origin private file system (outside the staging directory).
    await context.addInitScript(() => {
      (window as unknown as Record<string, unknown>)['showSaveFilePicker'] = async () =>
        (await navigator.storage.getDirectory()).getFileHandle('archive.tar', { create: true });
    });
    const page = await context.newPage();
    await page.goto(server.url);
    const name = `${env.anon.host}/test/v2s2:latest`;
    await page.getByLabel('Image', { exact: true }).fill(name);
    await page.getByLabel('Save to').selectOption('file');
    await page.getByLabel('Keep a copy in this browser').uncheck();
    await page.getByRole('button', { name: 'Pull', exact: true }).click();
    await page.getByTestId('saved').waitFor({ timeout: 60_000 });
    const bytes = await page.evaluate(async () => {
      const file = await (await (await navigator.storage.getDirectory()).getFileHandle('archive.tar')).getFile();
      return Array.from(new Uint8Array(await file.arrayBuffer()));
    });
    const file = join(dir, 'nocopy.tar');
    await writeFile(file, Uint8Array.from(bytes));
    await validateV2s2(file, name);
    expect(await idbKeys(page)).toEqual([]);
    // The pull worker's sweep after the pull removes the files of the blobs it deleted.
    await expect.poll(() => stagedFiles(page), { timeout: 30_000 }).toEqual([]);
    await context.close();
  });
});
