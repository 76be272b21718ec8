// Resume and a shared cache in the real app (the real server and proxy, the token registry with
// redirected blobs behind a relay that can stall or rate-cap blob bodies): a pull interrupted by a
// page reload mid-layer continues from the bytes IndexedDB kept, asking the registry's redirect
// target for `Range: bytes=<kept>-` (Chromium, Firefox and WebKit, tests/helpers/e2e.ts); in
// Chromium also a browser restart on the same profile, parallel ranges against a sweep, and two tabs
// pulling the same image at once, which need a persistent profile, injected modules and two pages of
// one profile (Playwright's, below).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { pushBigImage, type BigImage } from '../helpers/big-image.ts';
import { startCutRelay, type CutRelay } from '../helpers/cut-relay.ts';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import { validateDockerArchive } from '../helpers/validate.ts';
import { runText } from '../helpers/command.ts';
import { pseudoRandomBytes, type ManifestTruth } from '../helpers/fixtures.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';
import { bundleForPage } from '../helpers/page-bundle.ts';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { SEL, waitPulled } from '../helpers/app-page.ts';
import { resolve } from 'node:path';
import type { StorePageApi } from './pages/store-page.ts';

const env = inject('registryEnv');
const MiB = 1024 * 1024;
let browser: Browser;
let server: RunningServer;
let relay: CutRelay;
let image: BigImage;
let dir: string;
/** Uncaught errors of any page: the test that caused one fails at its end. */
const pageErrors: string[] = [];

beforeAll(async () => {
  [image, relay, browser, dir] = await Promise.all([
    // The third layer inflates to 40 MiB of zeros before 2 MiB of noise: a legacy pull writes two
    // 16 MiB segments of its diff_id long before that blob's record exists.
    pushBigImage(env, 'resume/e2e', [
      6 * MiB,
      3 * MiB,
      { 'data/a-zeros.bin': new Uint8Array(40 * MiB), 'data/b-noise.bin': pseudoRandomBytes(2 * MiB, 'noise') },
    ]),
    startCutRelay(env.token.url),
    launchChromium(),
    mkdtemp(join(tmpdir(), 'longshore-e2e-resume-')),
  ]);
  server = await startAppServer([relay.host], { tokenRealms: [env.tokenServer.realm] });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await relay?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const name = () => `${relay.host}/${image.path}`;
const fileName = () => `127.0.0.1_${relay.host.split(':')[1]}_resume_e2e_latest.tar`;
const bigLayer = () => image.layers.reduce((a, b) => (b.size > a.size ? b : a));

async function openApp(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(server.url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  // These tests take the download the Download button offers when the pull ends (the streamed
  // paths are tests/e2e/save.test.ts).
  await page.getByLabel('Save to').selectOption('blob');
  return page;
}

async function startPull(page: Page, format = 'docker'): Promise<void> {
  await page.getByLabel('Format').selectOption(format);
  await page.getByLabel('Image', { exact: true }).fill(name());
  await page.getByRole('button', { name: 'Pull' }).click();
}

async function download(page: Page, label: string): Promise<string> {
  const button = page.getByTestId('download');
  await Promise.race([
    button.waitFor({ timeout: 90_000 }),
    page
      .getByTestId('error')
      .waitFor({ timeout: 90_000 })
      .then(async () => {
        throw new Error(`pull failed in the page: ${await page.getByTestId('error').textContent()}`);
      }),
  ]);
  const [saved] = await Promise.all([page.waitForEvent('download'), button.click()]);
  expect(saved.suggestedFilename()).toBe(fileName());
  const path = join(dir, `${label}-${fileName()}`);
  await saved.saveAs(path);
  return path;
}

/**
 * Records of the page's cache (IndexedDB 'longshore', store 'blobs') by key, segments as their
 * sizes, plus the workers' staged files (OPFS `longshore-inflight/longshore/`) as `file:<name>` → size.
 */
async function cacheRecords(page: Page | E2EPage): Promise<Record<string, unknown>> {
  const evaluate = page.evaluate as (fn: () => Promise<Record<string, unknown>>) => Promise<Record<string, unknown>>;
  const files = await evaluate.call(page, async () => {
    const out: Record<string, number> = {};
    try {
      const root = await navigator.storage.getDirectory();
      const dir = await (await root.getDirectoryHandle('longshore-inflight')).getDirectoryHandle('longshore');
      for await (const [name, handle] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemFileHandle]> }).entries())
        out[`file:${name}`] = (await handle.getFile()).size;
    } catch {
      // No staging directory (yet), or no OPFS in this browser.
    }
    return out;
  });
  return { ...(await idbRecords(page)), ...files };
}

function idbRecords(page: Page | E2EPage): Promise<Record<string, unknown>> {
  const evaluate = page.evaluate as (fn: () => Promise<Record<string, unknown>>) => Promise<Record<string, unknown>>;
  // Never opens (and so creates, without its object store) the database before the app does.
  return evaluate.call(page, async () =>
    !(await indexedDB.databases()).some((d) => d.name === 'longshore')
      ? {}
      : new Promise<Record<string, unknown>>((resolve, reject) => {
          const open = indexedDB.open('longshore');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const store = open.result.transaction('blobs', 'readonly').objectStore('blobs');
            const keys = store.getAllKeys();
            const values = store.getAll();
            values.onsuccess = () => {
              open.result.close();
              resolve(
                Object.fromEntries(
                  keys.result.map((k, i) => {
                    const v = values.result[i] as unknown;
                    // Segments are Blobs, or ArrayBuffers where IndexedDB refuses Blobs (WebKit's ephemeral sessions).
                    return [String(k), v instanceof Blob ? v.size : v instanceof ArrayBuffer ? v.byteLength : v];
                  }),
                ),
              );
            };
            values.onerror = () => reject(values.error);
          };
        }),
  );
}

/** No orphan segment, no unfinished download, every record's segments present and adding up to its size. */
function cacheProblems(records: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const referenced = new Set<string>();
  for (const [key, value] of Object.entries(records)) {
    if (key.startsWith('part:')) problems.push(`unfinished ${key}`);
    if (!key.startsWith('blob:')) continue;
    const record = value as { size: number; segments: string[]; file?: string };
    if (record.file) {
      // A staged blob: its bytes are one OPFS file.
      referenced.add(`file:${record.file}`);
      if (records[`file:${record.file}`] !== record.size)
        problems.push(`${key}: its file holds ${String(records[`file:${record.file}`])} bytes, record says ${record.size}`);
      continue;
    }
    let bytes = 0;
    for (const s of record.segments) {
      if (typeof records[s] !== 'number') problems.push(`${key}: missing ${s}`);
      if (referenced.has(s)) problems.push(`${s} shared`);
      referenced.add(s);
      bytes += (records[s] as number | undefined) ?? 0;
    }
    if (bytes !== record.size) problems.push(`${key}: ${bytes} bytes stored, record says ${record.size}`);
  }
  for (const key of Object.keys(records))
    if ((key.startsWith('seg:') || key.startsWith('file:')) && !referenced.has(key)) problems.push(`orphan ${key}`);
  return problems;
}

async function staticRanges(mark: number, digest: string): Promise<string[]> {
  const log = await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl, mark);
  return log
    .filter((r) => r.method === 'GET' && r.url.includes(digest.slice(7)))
    .map((r) => (typeof r.headers.range === 'string' ? r.headers.range : ''));
}

function check(file: string) {
  return validateDockerArchive({
    file,
    storageDir: env.storageDir,
    skopeoEnv: env.skopeoEnv,
    manifest: { raw: image.manifestRaw } as ManifestTruth,
    config: { raw: image.configRaw, digest: '', size: 0 },
    repoTag: name(),
  });
}

// Chromium only: a restart on a profile kept on disk (launchPersistentContext), modules injected
// into the app's origin (page-bundle.ts) and two pages of one profile are Playwright's.
describe('resume in the browser, Chromium', () => {
  it('a browser restart mid-layer (same profile on disk): the next pull continues from the kept bytes', async () => {
    const big = bigLayer();
    relay.rules = { stallAfter: 3 * MiB + 777, minBlobBytes: 5 * MiB };
    const profile = join(dir, 'profile');
    const launch = () =>
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM_PATH,
        headless: true,
        args: [...CHROMIUM_ARGS],
        acceptDownloads: true,
      });
    let context = await launch();
    try {
      let page = await openApp(context);
      await startPull(page);
      let kept = 0;
      await expect
        .poll(
          async () => {
            const part = (await cacheRecords(page))[`part:${big.digest}`] as { done: number } | undefined;
            kept = part?.done ?? 0;
            return kept;
          },
          { timeout: 30_000 },
        )
        .toBe(3 * MiB + 777);
      await context.close();
      relay.releaseStalls();
      relay.rules = {};

      context = await launch();
      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      page = await openApp(context);
      await startPull(page);
      await check(await download(page, 'restarted'));
      expect(await staticRanges(mark, big.digest)).toEqual([`bytes=${kept}-`]);
      expect(cacheProblems(await cacheRecords(page))).toEqual([]);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('?ranges=N and ?rangesFrom=bytes set the parallel ranges of the app: the 6 MiB layer in 4 ranges from 1 MiB on, in one request with ranges=1', async () => {
    const big = bigLayer();
    relay.rules = {};
    const quarter = Math.ceil(big.size / 4);
    for (const [query, expected] of [
      ['ranges=4&rangesFrom=1048576', [0, 1, 2, 3].map((i) => `bytes=${i * quarter}-${Math.min(big.size, (i + 1) * quarter) - 1}`)],
      ['ranges=1&rangesFrom=1048576', ['']],
    ] as const) {
      const context = await browser.newContext({ acceptDownloads: true });
      try {
        const page = await context.newPage();
        page.on('pageerror', (e) => pageErrors.push(e.message));
        await page.goto(`${server.url}?${query}`);
        await page.getByLabel('Save to').selectOption('blob');
        const mark = await requestLogMark(env.staticServer.requestLogUrl);
        await startPull(page);
        await check(await download(page, query.slice(0, 8)));
        expect((await staticRanges(mark, big.digest)).sort(), query).toEqual([...expected].sort());
      } finally {
        await context.close();
      }
    }
    expect(pageErrors).toEqual([]);
  });

  it('parallel ranges in one tab while another sweeps: the ranges stored ahead of the cursor survive, the blob verifies', async () => {
    const big = bigLayer();
    relay.rules = { bytesPerSecond: MiB };
    const bundle = await bundleForPage(resolve(import.meta.dirname, 'pages/store-page.ts'));
    const context = await browser.newContext();
    const [puller, sweeper] = [await context.newPage(), await context.newPage()];
    for (const p of [puller, sweeper]) {
      await p.goto(server.url);
      await p.addScriptTag({ content: bundle, type: 'module' });
      await p.waitForFunction(() => 'longshoreTest' in globalThis);
    }
    const db = `ranges-${Date.now()}`;
    await puller.evaluate(
      ([ref, name, threshold]) => {
        const t = (globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest;
        (globalThis as unknown as { pulling: Promise<string | undefined> }).pulling = t
          .pullHere(ref, new t.IdbBlobStore(name, { segmentBytes: 256 * 1024 }), { connections: 4, threshold })
          .then(
            () => undefined,
            (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
          );
      },
      [name(), db, 4 * MiB] as const,
    );
    const spilled = (k: string) => k.startsWith(`seg:${big.digest}:`) && k.includes(':spill');
    // Never opens (and so creates) the database before the store does.
    const keysOf = (p: Page) =>
      p.evaluate(
        async (n) =>
          (await indexedDB.databases()).some((d) => d.name === n)
            ? new Promise<string[]>((done, fail) => {
                const open = indexedDB.open(n);
                open.onsuccess = () => {
                  try {
                    const req = open.result.transaction('blobs').objectStore('blobs').getAllKeys();
                    req.onsuccess = () => {
                      open.result.close();
                      done(req.result.map(String));
                    };
                  } catch (err) {
                    fail(err);
                  }
                };
              })
            : [],
        db,
      );
    await expect.poll(async () => (await keysOf(sweeper)).some(spilled), { timeout: 30_000 }).toBe(true);
    const swept = await sweeper.evaluate(
      (n) => new (globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest.IdbBlobStore(n).sweep(),
      db,
    );
    expect(swept).toBe(0);
    expect(await puller.evaluate(() => (globalThis as unknown as { pulling: Promise<string | undefined> }).pulling)).toBeUndefined();
    relay.rules = {};
    const back = await puller.evaluate(
      async ([n, digest]) => {
        const t = (globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest;
        const blob = await new t.IdbBlobStore(n).getBlob(digest);
        return t.sha256(new Uint8Array(await blob!.arrayBuffer()));
      },
      [db, big.digest] as const,
    );
    expect(back).toBe(big.digest);
    expect((await keysOf(puller)).filter(spilled)).toEqual([]);
    await context.close();
  });

  it('two tabs: one pulls legacy, the other starts (and sweeps the cache) while the first has diff_id segments without a record; both archives validate, the cache stays consistent', async () => {
    relay.rules = { bytesPerSecond: MiB };
    const context = await browser.newContext({ acceptDownloads: true });
    const [a, b] = [await openApp(context), await openApp(context)];
    const diffIds = (JSON.parse(image.configRaw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    await startPull(a, 'legacy');
    // Segments of a diff_id written, its record not yet: what an unguarded sweep takes for orphans.
    await expect
      .poll(
        async () => {
          const records = await cacheRecords(a);
          // Segments (IndexedDB path) or a staged file (OPFS path) of a diff_id.
          const staged = (d: string) => `file:${encodeURIComponent(d)}~`;
          return diffIds.some(
            (d) => !records[`blob:${d}`] && Object.keys(records).some((k) => k.startsWith(`seg:${d}:`) || k.startsWith(staged(d))),
          );
        },
        { timeout: 30_000 },
      )
      .toBe(true);
    await startPull(b, 'docker');
    const [fileA, fileB] = await Promise.all([download(a, 'tab-a'), download(b, 'tab-b')]);
    relay.rules = {};
    await check(fileA);
    await check(fileB);
    const manifest = JSON.parse(await runText('tar', ['-xOf', fileA, 'manifest.json'])) as { Layers: string[] }[];
    for (const [i, path] of manifest[0]!.Layers.entries()) {
      const hash = (await runText('sh', ['-c', 'tar -xOf "$1" "$2" | sha256sum', 'sh', fileA, path])).split(' ')[0];
      expect(`sha256:${hash}`).toBe(diffIds[i]);
    }
    const records = await cacheRecords(a);
    expect(cacheProblems(records)).toEqual([]);
    for (const l of image.layers) expect(records[`blob:${l.digest}`], l.digest).toBeDefined();
    for (const d of diffIds) expect(records[`blob:${d}`], d).toBeDefined();
    expect(pageErrors).toEqual([]);
    await context.close();
  });
});

forEachEngine((engine) => {
  async function openEngineApp(e: EngineHandle): Promise<E2EPage> {
    const page = await e.open(server.url);
    await page.waitFor(SEL.name);
    // The download the Download button offers when the pull ends (streamed paths: save.test.ts).
    await page.select(SEL.saveTo, 'blob');
    return page;
  }

  async function startEnginePull(page: E2EPage): Promise<void> {
    await page.select(SEL.format, 'docker');
    await page.fill(SEL.name, name());
    await page.click(SEL.pull);
  }

  describe('resume in the browser', () => {
    it('a layer cut upstream mid-body: the proxy ends the body where the bytes stop, and the pull resumes at exactly the cut byte', async () => {
      // A browser drops what it still holds of a body that failed (Chromium: the unread part of its
      // data pipe); the proxy, asked by the client (x-longshore-on-cut), ends it cleanly instead.
      const big = bigLayer();
      const cutAt = 2 * MiB + 12_345;
      relay.rules = { cutAfter: cutAt, minBlobBytes: 5 * MiB };
      relay.blobs.clear();
      const page = await openEngineApp(engine);
      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      try {
        await startEnginePull(page);
        await waitPulled(page, SEL.download, 90_000);
      } finally {
        relay.rules = {};
      }
      const saved = await page.downloadBy(SEL.download);
      expect(saved.name).toBe(fileName());
      await check(saved.path);
      expect(relay.blobs.get(big.digest.slice(7))?.cuts).toBe(1);
      expect(await staticRanges(mark, big.digest)).toEqual(['', `bytes=${cutAt}-`]);
      expect(cacheProblems(await cacheRecords(page))).toEqual([]);
    });

    it('a page reloaded mid-layer: the next pull asks for Range: bytes=<kept>- and the archive validates with skopeo', async () => {
      const big = bigLayer();
      relay.rules = { stallAfter: 2 * MiB + 12_345, minBlobBytes: 5 * MiB };
      const page = await openEngineApp(engine);
      await startEnginePull(page);
      // The stalled layer's bytes are checkpointed (segment + offset + hasher state) within a second.
      let kept = 0;
      await expect
        .poll(
          async () => {
            const part = (await cacheRecords(page))[`part:${big.digest}`] as { done: number } | undefined;
            kept = part?.done ?? 0;
            return kept;
          },
          { timeout: 30_000 },
        )
        .toBe(2 * MiB + 12_345);
      // Chromium's layer worker keeps the bytes in an OPFS file; IndexedDB has the record (done,
      // hasher state). Engines without OPFS sync access handles here keep IndexedDB segments.
      if (engine.name === 'chromium')
        expect((await cacheRecords(page))[`part:${big.digest}`]).toMatchObject({ file: expect.stringMatching(/\.part$/) as unknown });
      await page.reload();
      relay.releaseStalls();
      relay.rules = {};

      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      await page.waitFor(SEL.name);
      await page.select(SEL.saveTo, 'blob');
      await startEnginePull(page);
      await waitPulled(page, SEL.download, 90_000);
      const saved = await page.downloadBy(SEL.download);
      expect(saved.name).toBe(fileName());
      await check(saved.path);
      expect(await staticRanges(mark, big.digest)).toEqual([`bytes=${kept}-`]);
      expect(cacheProblems(await cacheRecords(page))).toEqual([]);
    });
  });
});
