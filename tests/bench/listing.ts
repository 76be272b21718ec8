// The layer-listing target of the performance issue: a 100,000-entry layer must show its first
// rows in < 1 s, be completely listed in < 5 s, and never hold the main thread for more than
// 100 ms while it lists. Measured on the real page (the built app, served by the bench's server),
// in a fresh page per run:
//   - `pulled` (the product path): the image is pulled in the page from the bench's token registry,
//     and its "Browse the files" button pressed: the inspector reads the layer back from IndexedDB;
//   - `archive`: the same image as an oci-archive given to "Open local archive".
// The image is built with independent tools (GNU tar → umoci; skopeo writes the archive) once,
// cached in .cache/bench/listing-100k/, and rebuilt when missing or when the recipe changes.
// Times are taken in the page's own clock by a MutationObserver; long tasks by the Long Tasks
// API; both installed before the app loads (addInitScript).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { run, runText } from '../helpers/command.ts';
import { MediaType, reproducibleTarOptions, skopeoCopy, type Descriptor } from '../helpers/images.ts';
import type { Credentials } from '../helpers/registries.ts';
import { fromPlaywright } from './cdp.ts';
import { HeapProbe } from './chromium-metrics.ts';
import { openApp, typeName, type Sessions } from './longshore.ts';
import { Peaks, startSampling } from './proc.ts';
import type { ListingSample, ListingSource } from './table.ts';

export const LISTING_SOURCES: readonly ListingSource[] = ['pulled', 'archive'];

/** Bump when the recipe changes, so an old cached image is not reused. */
const RECIPE = 1;
const DIRS = 100;
const FILES_PER_DIR = 999;
/** 100 directories + 99,900 files. */
export const LISTING_ENTRIES = DIRS * (FILES_PER_DIR + 1);
const TAG = 'latest';
export const LISTING_REPOSITORY = 'bench/listing-100k';
const CREATED = '2024-01-01T00:00:00Z';

export interface ListingImage {
  dir: string;
  layoutDir: string;
  /** The same image as an oci-archive (skopeo), for the `archive` source. */
  archiveFile: string;
  entries: number;
  /** The last entry GNU tar lists (no trailing slash): the table's last row. */
  lastPath: string;
  manifestDigest: string;
  config: Descriptor;
  layer: Descriptor & { diffId: string; uncompressedSize: number };
}

interface ListingRecord extends Omit<ListingImage, 'dir' | 'layoutDir' | 'archiveFile'> {
  recipe: number;
  builtAt: string;
  buildSeconds: number;
  manifestSize: number;
  archiveSize: number;
}

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

async function build(dir: string): Promise<ListingRecord> {
  const started = performance.now();
  const layoutDir = join(dir, 'layout');
  const workDir = join(dir, 'work');
  const treeDir = join(workDir, 'tree');
  await rm(dir, { recursive: true, force: true });
  await mkdir(treeDir, { recursive: true });
  log(`building the ${LISTING_ENTRIES.toLocaleString('en-US')}-entry listing image (once; cached in ${dir})`);

  // d000/ … d099/, each with 999 empty files numbered across the whole layer.
  const dirs: string[] = [];
  for (let d = 0; d < DIRS; d++) {
    const name = `d${String(d).padStart(3, '0')}`;
    dirs.push(name);
    mkdirSync(join(treeDir, name));
    for (let f = 0; f < FILES_PER_DIR; f++)
      closeSync(openSync(join(treeDir, name, `file-${String(d * FILES_PER_DIR + f).padStart(6, '0')}.txt`), 'w'));
  }
  const tarFile = join(workDir, 'layer.tar');
  await run('tar', [
    '--create',
    `--file=${tarFile}`,
    `--directory=${treeDir}`,
    ...reproducibleTarOptions(),
    '--sort=name',
    '--mode=u=rwX,go=rX',
    ...dirs,
  ]);
  // GNU tar's own word for what the layer holds.
  const listed = (await runText('tar', ['--list', `--file=${tarFile}`])).split('\n').filter(Boolean);
  if (listed.length !== LISTING_ENTRIES) throw new Error(`the listing layer has ${listed.length} entries, expected ${LISTING_ENTRIES}`);
  const lastPath = listed.at(-1)!.replace(/\/$/, '');
  const uncompressedSize = (await stat(tarFile)).size;

  await run('umoci', ['init', '--layout', layoutDir]);
  const image = `${layoutDir}:${TAG}`;
  await run('umoci', ['new', '--image', image]);
  await run('umoci', [
    'raw',
    'add-layer',
    '--image',
    image,
    '--history.created',
    CREATED,
    '--history.created_by',
    `longshore bench: ${LISTING_ENTRIES} entries`,
    tarFile,
  ]);
  await run('umoci', [
    'config',
    '--image',
    image,
    '--created',
    CREATED,
    '--history.created',
    CREATED,
    '--architecture',
    'amd64',
    '--os',
    'linux',
    '--config.cmd',
    '/bin/sh',
  ]);
  await rm(workDir, { recursive: true, force: true });

  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const entry = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === TAG);
  if (!entry) throw new Error(`no tag ${TAG} in ${layoutDir}`);
  const umoci = JSON.parse(await readFile(join(layoutDir, 'blobs/sha256', entry.digest.slice(7)), 'utf8')) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  const configRaw = await readFile(join(layoutDir, 'blobs/sha256', umoci.config.digest.slice(7)), 'utf8');
  const diffId = (JSON.parse(configRaw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
  const layerBlob = umoci.layers[0]!;
  const config: Descriptor = { mediaType: MediaType.ociConfig, digest: umoci.config.digest, size: umoci.config.size };
  const layer = { mediaType: MediaType.ociLayerGzip, digest: layerBlob.digest, size: layerBlob.size, diffId, uncompressedSize };
  // Written by hand so the manifest carries its mediaType, which umoci 0.4 leaves out (as image.ts does).
  const manifestRaw = JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  });
  const manifestHex = createHash('sha256').update(manifestRaw).digest('hex');
  await writeFile(join(layoutDir, 'blobs/sha256', manifestHex), manifestRaw);
  const manifest: Descriptor = {
    mediaType: MediaType.ociManifest,
    digest: `sha256:${manifestHex}`,
    size: Buffer.byteLength(manifestRaw),
    annotations: { 'org.opencontainers.image.ref.name': TAG },
  };
  await writeFile(
    join(layoutDir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [manifest] }),
  );

  const archiveFile = join(dir, 'listing-100k.oci.tar');
  await skopeoCopy(`oci:${layoutDir}:${TAG}`, `oci-archive:${archiveFile}:${LISTING_REPOSITORY}:${TAG}`, {
    env: process.env,
    preserveDigests: true,
  });

  const record: ListingRecord = {
    recipe: RECIPE,
    builtAt: new Date().toISOString(),
    buildSeconds: (performance.now() - started) / 1000,
    entries: LISTING_ENTRIES,
    lastPath,
    manifestDigest: manifest.digest,
    manifestSize: manifest.size,
    config,
    layer,
    archiveSize: (await stat(archiveFile)).size,
  };
  await writeFile(join(dir, 'listing.json'), `${JSON.stringify(record, null, 2)}\n`);
  log(
    `  ${(uncompressedSize / 1e6).toFixed(0)} MB tar → ${(layer.size / 1e6).toFixed(1)} MB gzip; built in ${record.buildSeconds.toFixed(0)} s`,
  );
  return record;
}

function cacheIsWhole(dir: string, record: ListingRecord): boolean {
  if (record.recipe !== RECIPE || record.entries !== LISTING_ENTRIES) return false;
  const files: [string, number][] = [
    ...[record.config, record.layer, { digest: record.manifestDigest, size: record.manifestSize }].map((d): [string, number] => [
      join(dir, 'layout/blobs/sha256', d.digest.slice(7)),
      d.size,
    ]),
    [join(dir, 'listing-100k.oci.tar'), record.archiveSize],
  ];
  return existsSync(join(dir, 'layout/index.json')) && files.every(([file, size]) => existsSync(file) && statSync(file).size === size);
}

/** The 100,000-entry image, from .cache/bench/listing-100k/ or freshly built there. */
export async function listingImage(cacheRoot: string): Promise<ListingImage> {
  const dir = join(cacheRoot, 'listing-100k');
  let record: ListingRecord | undefined;
  try {
    record = JSON.parse(await readFile(join(dir, 'listing.json'), 'utf8')) as ListingRecord;
  } catch {
    record = undefined;
  }
  if (record && cacheIsWhole(dir, record)) log(`using the cached listing image (${dir})`);
  else record = await build(dir);
  const { recipe: _r, builtAt: _b, buildSeconds: _s, manifestSize: _m, archiveSize: _a, ...image } = record;
  return { ...image, dir, layoutDir: join(dir, 'layout'), archiveFile: join(dir, 'listing-100k.oci.tar') };
}

/** skopeo pushes the layout's bytes unchanged; blobs the registry has already are skipped. */
export async function pushListingImage(
  image: ListingImage,
  destination: string,
  env: NodeJS.ProcessEnv,
  credentials: Credentials,
): Promise<void> {
  await skopeoCopy(`oci:${image.layoutDir}:${TAG}`, `docker://${destination}`, {
    env,
    preserveDigests: true,
    destCredentials: credentials,
  });
}

export class ListingFailedError extends Error {
  override name = 'ListingFailedError';
}

declare global {
  interface Window {
    __longshoreListing?: ListingProbeState;
  }
}

/** What the page-side probe records (page clock, ms). */
interface ListingProbeState {
  /** [startTime, duration] of every long task since the page started. */
  longTasks: [number, number][];
  /** [startTime, duration] of every long animation frame (LoAF: a frame, rendering included, over 50 ms). */
  longFrames: [number, number][];
  /** Pull click (pulled). */
  pullClick?: number;
  /** The pull's status turned ready (pulled). */
  ready?: number;
  /** The Table radio's change event. */
  table?: number;
  /** The inspector is asked for the image: the "Browse the files" click after the pull (pulled) or the file input's change event (archive). */
  start?: number;
  firstRows?: number;
  /** layer 1 data-state=complete first seen. */
  stateComplete?: number;
  /** …and the table's data-total equal to the expected entries. */
  complete?: number;
  total?: number;
  state?: string;
  error?: string;
  firstRowsSeen: Promise<void>;
  stateCompleteSeen: Promise<void>;
  done: Promise<void>;
}

/**
 * Installed before the app loads. A string, not a function: tsx's esbuild adds `__name(…)` calls
 * to named inner functions, which do not exist in the page (see STAMP_PHASES in longshore.ts).
 * The observer does a few querySelector calls per mutation batch: negligible next to a listing.
 */
function probeScript(expected: number): string {
  return `(() => {
  const s = { longTasks: [], longFrames: [] };
  window.__longshoreListing = s;
  let firstRowsSeen, stateCompleteSeen, done;
  s.firstRowsSeen = new Promise((r) => (firstRowsSeen = r));
  s.stateCompleteSeen = new Promise((r) => (stateCompleteSeen = r));
  s.done = new Promise((r) => (done = r));
  const fail = (message) => {
    if (s.error === undefined) s.error = message;
    firstRowsSeen();
    stateCompleteSeen();
    done();
  };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) s.longTasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) {
    s.noLongTasks = String(e);
  }
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) s.longFrames.push([e.startTime, e.duration]);
    }).observe({ type: 'long-animation-frame', buffered: true });
  } catch {}
  document.addEventListener('change', (e) => {
    const t = e.target;
    if (s.start === undefined && t && t.getAttribute && t.getAttribute('data-testid') === 'archive-input') s.start = performance.now();
    if (s.table === undefined && t && t.name === 'inspect-mode') s.table = performance.now();
  }, true);
  document.addEventListener('click', (e) => {
    const t = e.target;
    if (s.pullClick === undefined && t && t.closest && t.closest('button') && t.closest('button').textContent.trim() === 'Pull') s.pullClick = performance.now();
    if (s.start === undefined && s.pullClick !== undefined && t && t.closest && t.closest('[data-testid="browse-pulled"]')) s.start = performance.now();
  }, true);
  const text = (el) => (el.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, 300);
  const check = () => {
    if (s.error !== undefined || s.complete !== undefined) return;
    const now = performance.now();
    const error = document.querySelector('[data-testid="error"], [data-testid="inspect-error"], [data-testid="layer-error"]');
    if (error) return fail('[' + (error.getAttribute('data-code') || '?') + '] ' + text(error));
    if (s.start === undefined) {
      if (s.pullClick !== undefined && s.ready === undefined && document.querySelector('[data-testid="status"][data-status="ready"]')) s.ready = now;
      return;
    }
    if (s.firstRows === undefined && document.querySelector('[data-testid="entry-row"]')) {
      s.firstRows = now;
      firstRowsSeen();
    }
    const view = document.querySelector('[data-testid="view-layer-1"]');
    s.state = view ? view.getAttribute('data-state') : undefined;
    if (s.state === 'failed' || s.state === 'limited') return fail('layer 1 ' + s.state + ': ' + text(view));
    const rows = document.querySelector('[data-testid="entry-rows"]');
    s.total = rows ? Number(rows.getAttribute('data-total')) : undefined;
    if (s.state === 'complete' && s.stateComplete === undefined) {
      s.stateComplete = now;
      stateCompleteSeen();
    }
    if (s.state === 'complete' && s.total === ${expected}) {
      s.complete = now;
      done();
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state', 'data-total', 'data-status', 'data-testid'] });
})()`;
}

const PROBE = 'window.__longshoreListing';

export interface ListingRunOptions {
  sessions: Sessions;
  appUrl: string;
  image: ListingImage;
  /** pulled: the image's name on the bench registry. */
  reference: string;
  /** Per wait: pull, first rows, complete. */
  timeoutMs?: number;
}

/** Rejects after `ms` with a message built then (so it can say where the page got stuck). */
function deadline(ms: number, message: () => Promise<string>): { promise: Promise<never>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        void message().then(
          (m) => reject(new ListingFailedError(m)),
          (e: unknown) => reject(e),
        ),
      ms,
    );
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

async function waitFor(page: Page, what: 'firstRowsSeen' | 'stateCompleteSeen' | 'done', ms: number, describe: string): Promise<void> {
  const limit = deadline(ms, async () => `${describe} within ${ms / 1000} s; page: ${await snapshot(page)}`);
  try {
    await Promise.race([page.evaluate(`${PROBE}.${what}.then(() => undefined)`), limit.promise]);
  } finally {
    limit.cancel();
  }
  const error = (await page.evaluate(`${PROBE}.error`)) as string | undefined;
  if (error !== undefined) throw new ListingFailedError(`the page showed an error: ${error}`);
}

async function snapshot(page: Page): Promise<string> {
  return (await page
    .evaluate(
      `JSON.stringify({ state: ${PROBE}.state, total: ${PROBE}.total, layer: document.querySelector('[data-testid="view-layer-1"]')?.textContent?.replace(/\\s+/g, ' ').trim(), status: document.querySelector('[data-testid="status"]')?.getAttribute('data-status') })`,
    )
    .catch((e: unknown) => `(unreadable: ${e instanceof Error ? e.message : String(e)})`)) as string;
}

/** One listing in a fresh session (fresh profile: empty IndexedDB) and page. */
export async function measureListing(o: ListingRunOptions, source: ListingSource): Promise<ListingSample> {
  const timeoutMs = o.timeoutMs ?? 120_000;
  const session = await o.sessions.open();
  let probe: HeapProbe | undefined;
  // Reset when Browse is pressed: the figures are the listing's, not the pull's before it.
  let peaks = new Peaks();
  let sampling = true;
  const sampler = startSampling(async () => {
    const heap = await probe?.read();
    if (!heap) return;
    peaks.see('pageHeap', heap.page);
    peaks.see('workerHeap', heap.workers);
    peaks.see('pageBuffers', heap.pageBuffers);
    peaks.see('workerBuffers', heap.workerBuffers);
  });
  try {
    const page = await openApp(session.context, o.appUrl, async (p) => {
      await p.addInitScript(probeScript(o.image.entries));
      probe = await HeapProbe.attach(fromPlaywright(await p.context().newCDPSession(p)));
    });
    if (source === 'pulled') {
      await typeName(page, o.reference, (message) => new ListingFailedError(message));
      await page.getByRole('button', { name: 'Pull', exact: true }).click();
      // The inspector offers the pulled image; a person who wants to see inside presses Browse.
      const browse = page.getByTestId('browse-pulled');
      const pullError = page.getByTestId('error');
      const outcome = await Promise.race([
        browse.waitFor({ timeout: timeoutMs }).then(() => 'offered' as const),
        pullError.waitFor({ timeout: timeoutMs }).then(() => 'error' as const),
      ]);
      if (outcome === 'error')
        throw new ListingFailedError(
          `the pull of ${o.reference} failed in the page: [${await pullError.getAttribute('data-code')}] ${await pullError.textContent()}`,
        );
      peaks = new Peaks();
      await browse.click();
    } else {
      await page.getByLabel('Open local archive').setInputFiles(o.image.archiveFile);
    }
    // Pulled: the pull itself comes first; its time is reported apart, not counted.
    await waitFor(page, 'firstRowsSeen', timeoutMs, 'no entry row showed');
    // As a person reading the whole layer would: the flat table, where data-total counts every entry.
    await page.getByLabel('Table', { exact: true }).check();
    await waitFor(page, 'stateCompleteSeen', timeoutMs, 'layer 1 did not reach state complete');
    await waitFor(page, 'done', 15_000, `layer 1 is complete but the table did not show ${o.image.entries} rows`);
    // Long-task entries are delivered after their task ends; let the last ones arrive.
    await page.waitForTimeout(300);
    const s = (await page.evaluate(
      `(() => { const { firstRowsSeen, stateCompleteSeen, done, ...rest } = ${PROBE}; return rest; })()`,
    )) as Omit<ListingProbeState, 'firstRowsSeen' | 'stateCompleteSeen' | 'done'> & { noLongTasks?: string };
    if (s.noLongTasks) throw new ListingFailedError(`this Chromium has no Long Tasks API: ${s.noLongTasks}`);
    const start = s.start!;
    const end = s.complete!;
    // [start, duration] relative to the start, for every entry overlapping [start, complete].
    const overlapping = (entries: [number, number][]): [number, number][] =>
      entries.filter(([t, d]) => t + d > start && t < end).map(([t, d]) => [Math.round(t - start), Math.round(d)]);
    const taskList = overlapping(s.longTasks);
    const frameList = overlapping(s.longFrames);
    const during = taskList.map(([, d]) => d);
    const frames = frameList.map(([, d]) => d);
    // The data is right, not only its count: the table's last row is the layer's last entry (End key).
    await page.getByTestId('entry-rows').focus();
    await page.keyboard.press('End');
    const lastShown = await page
      .waitForFunction(
        `(() => { const rows = [...document.querySelectorAll('[data-testid="entry-row"]')]; const last = rows.at(-1)?.getAttribute('data-path'); return last === ${JSON.stringify(o.image.lastPath)} ? last : false; })()`,
        undefined,
        { timeout: 10_000 },
      )
      .then(() => o.image.lastPath)
      .catch(async () => (await page.getByTestId('entry-row').last().getAttribute('data-path')) ?? '(none)');
    if (lastShown !== o.image.lastPath)
      throw new ListingFailedError(`the table's last row is ${lastShown}, GNU tar's last entry is ${o.image.lastPath}`);
    sampling = false;
    await sampler.stop();
    return {
      source,
      firstRowsMs: s.firstRows! - start,
      completeMs: end - start,
      entries: s.total ?? 0,
      longTasks: during.length,
      longestTaskMs: Math.max(0, ...during),
      longTaskMs: during.reduce((a, b) => a + b, 0),
      longFrames: frames.length,
      longestFrameMs: Math.max(0, ...frames),
      timeline: {
        ...(s.table !== undefined ? { tableMs: Math.round(s.table - start) } : {}),
        longTasks: taskList,
        longFrames: frameList,
      },
      ...(source === 'pulled' && s.pullClick !== undefined && s.ready !== undefined ? { pullMs: s.ready - s.pullClick } : {}),
      peaks: peaks.values,
    };
  } finally {
    if (sampling) await sampler.stop();
    await probe?.detach();
    await session.close();
  }
}
