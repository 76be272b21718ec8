// Drives the real page the way a person does (type a name, pick a format and where to save, press
// Pull, and for the Blob path press Download) in Debian's headless Chromium, and times it: Pull
// click → the file starts (the streamed download begins; for the Blob path, the Download button),
// Pull click → file complete. The page's status changes are stamped in the page, so the time spent
// resolving, downloading and assembling can be told apart.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, launchChromium } from '../helpers/browser.ts';

/**
 * `profile`: a fresh on-disk profile per session (launchPersistentContext), so IndexedDB and Blobs
 * live on disk as for a real user. `incognito`: a new context in one shared browser, as the e2e
 * tests do; Chromium then keeps IndexedDB and Blobs in memory, which shows in its RSS.
 */
export type SessionMode = 'profile' | 'incognito';

export interface Session {
  context: BrowserContext;
  close(): Promise<void>;
}

/** The on-disk profile of each persistent context (where its origin private file system lives). */
const profileDirs = new WeakMap<BrowserContext, string>();

/**
 * The file on disk holding an OPFS file of `size` bytes in `profileDir`: Chromium keeps the origin
 * private file system as plain files under obfuscated names (`File System/…/p/00/0000000N`), so
 * the newest file of exactly that size is the picked file the bench answered the picker with.
 */
async function opfsBackingFile(profileDir: string, size: number): Promise<string | undefined> {
  let best: { path: string; mtime: number } | undefined;
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory()) await walk(path);
      else if (e.isFile()) {
        const st = await stat(path);
        if (st.size === size && (!best || st.mtimeMs > best.mtime)) best = { path, mtime: st.mtimeMs };
      }
    }
  };
  await walk(join(profileDir, 'Default', 'File System'));
  return best?.path;
}

export class Sessions {
  #shared: Browser | undefined;

  constructor(readonly mode: SessionMode) {}

  /** A browser context with an empty IndexedDB (cold cache). */
  async open(): Promise<Session> {
    if (this.mode === 'incognito') {
      this.#shared ??= await launchChromium();
      const context = await this.#shared.newContext({ acceptDownloads: true });
      return { context, close: () => context.close() };
    }
    const userDataDir = await mkdtemp(join(tmpdir(), 'longshore-bench-profile-'));
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS],
      acceptDownloads: true,
    });
    profileDirs.set(context, userDataDir);
    return {
      context,
      close: async () => {
        await context.close();
        await rm(userDataDir, { recursive: true, force: true });
      },
    };
  }

  async close(): Promise<void> {
    await this.#shared?.close();
    this.#shared = undefined;
  }
}

/** The page's uncaught errors and console errors, for the message of a failed pull. */
const pageProblems = new WeakMap<Page, string[]>();

export async function openApp(context: BrowserContext, url: string, beforeNavigate?: (page: Page) => Promise<void>): Promise<Page> {
  const page = await context.newPage();
  const problems: string[] = [];
  pageProblems.set(page, problems);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await beforeNavigate?.(page);
  await page.goto(url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  return page;
}

/** The formats the built page offers, and the one selected at start. */
export async function pageFormats(page: Page): Promise<{ ids: string[]; selected: string }> {
  const select = page.getByLabel('Format');
  const ids = await select.locator('option').evaluateAll((options) => options.map((o) => (o as HTMLOptionElement).value));
  return { ids, selected: await select.inputValue() };
}

/**
 * `stream`: the service worker's download while the pull runs; `blob`: the Download button when it
 * ends; `file`: the File System Access path (Chromium's default), the picker answered by a file in
 * the origin private file system (not copied out: its size is checked, its bytes are not).
 */
export type BenchSave = 'stream' | 'blob' | 'file';

/** The picker, answered from the origin private file system (a string: see STAMP_PHASES). */
const OPFS_PICKER = `(() => {
  window.showSaveFilePicker = async (o) => (await navigator.storage.getDirectory()).getFileHandle((o && o.suggestedName) || 'archive.tar', { create: true });
})()`;

export interface PullTiming {
  /** performance.now() of this process at the Pull click (the relay stamps bytes in the same clock). */
  clickAt: number;
  /** Pull click → the page says the pull is done (Blob path: the Download button). */
  buttonSeconds: number;
  /** Pull click → the file starts: the streamed download begins (Blob path: the Download click). */
  firstByteSeconds: number;
  /** Pull click → Chromium finished writing the download. */
  downloadedSeconds: number;
  /**
   * Seconds after the click at which the page first showed each status (resolving, downloading, …),
   * `written` (the save progress first showed) and `arrived` (every layer's progress bar full: the
   * last layer byte reached the page).
   */
  phases: Record<string, number>;
  fileName: string;
  /**
   * The downloaded archive on disk (Chromium's own file, in Playwright's artifacts directory: not
   * copied, so a 6 GB image needs no second 6 GB); the caller removes it once verified. For
   * `file`: the picked file in the profile's origin private file system, judged where it is and
   * removed by `cleanup` (undefined in an incognito session: then only its size is known).
   */
  file: string | undefined;
  /** Removes the file where the browser must (an OPFS file, through the page); else the caller rm()s it. */
  cleanup?: () => Promise<void>;
  /** Its size as the page reads it back (`file`). */
  bytes?: number;
}

declare global {
  interface Window {
    __longshoreBench?: { t0: number; phases: Record<string, number> };
  }
}

/**
 * Stamps each page status the first time it shows. A string, not a function: tsx's esbuild adds
 * `__name(…)` calls to named inner functions, which do not exist in the page.
 */
const STAMP_PHASES = `(() => {
  const state = { t0: performance.now(), phases: {} };
  window.__longshoreBench = state;
  new MutationObserver(() => {
    const status = document.querySelector('[data-testid="status"]')?.getAttribute('data-status');
    if (status && !(status in state.phases)) state.phases[status] = (performance.now() - state.t0) / 1000;
    if (!('written' in state.phases) && document.querySelector('[data-testid="save-progress"]')) state.phases.written = (performance.now() - state.t0) / 1000;
    if (!('arrived' in state.phases)) {
      const bars = document.querySelectorAll('table.layers progress');
      if (bars.length > 0 && [...bars].every((p) => p.value >= p.max)) state.phases.arrived = (performance.now() - state.t0) / 1000;
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-status', 'value'] });
})()`;

/** What moves while a pull is alive: the status and every progress bar's value. */
const PROGRESS_SNAPSHOT = `(() => {
  const status = document.querySelector('[data-testid="status"]')?.getAttribute('data-status') ?? '?';
  const overall = document.querySelector('[data-testid="overall"]')?.textContent?.replace(/\\s+/g, ' ').trim() ?? '';
  const bars = [...document.querySelectorAll('progress')].map((p) => p.value).join(',');
  const layers = [...document.querySelectorAll('table.layers tbody tr')].map((r) => r.getAttribute('data-state')).join(',');
  return JSON.stringify({ status, overall, layers, bars });
})()`;

/** A pull that stops moving without an error would otherwise hold the run until the overall timeout. */
const STALL_MS = 180_000;
const STALL_POLL_MS = 5_000;

async function stallWatch(page: Page, signal: AbortSignal): Promise<{ state: string }> {
  let last = '';
  let since = Date.now();
  while (!signal.aborted) {
    await new Promise((r) => setTimeout(r, STALL_POLL_MS));
    if (signal.aborted) break;
    // A page that stops answering (its main thread blocked, or the CDP session gone) counts as no
    // progress: the evaluate is given up on, not awaited forever (a 1.5GB run once hung here silently).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const snapshot = (await Promise.race([
      page.evaluate(PROGRESS_SNAPSHOT).catch(() => last),
      new Promise<string>((r) => (timer = setTimeout(() => r(last), STALL_POLL_MS * 2))),
    ]).finally(() => clearTimeout(timer))) as string;
    if (snapshot !== last) {
      last = snapshot;
      since = Date.now();
    } else if (Date.now() - since > STALL_MS) {
      if (!snapshot) return { state: 'the page never answered a progress query' };
      const { bars: _bars, ...state } = JSON.parse(snapshot) as Record<string, string>;
      return { state: JSON.stringify(state) };
    }
  }
  // Never settles once the pull has ended; the race has been decided by then.
  return new Promise(() => undefined);
}

export class PullFailedError extends Error {
  override name = 'PullFailedError';
}

/**
 * Types `name` into the page and waits for the page's own look-up of it to finish (the platform
 * shows); if it never does, rejects with `fail` of a message quoting the page's help text.
 */
export async function typeName(page: Page, name: string, fail: (message: string) => Error): Promise<void> {
  await page.getByLabel('Image', { exact: true }).fill(name);
  await page
    .waitForFunction(
      () => {
        const text = document.querySelector('[data-testid="name-help"]')?.textContent ?? '';
        return /single image|multi-platform|·\s*\S/.test(text) && !/looking up/.test(text);
      },
      undefined,
      { timeout: 30_000 },
    )
    .catch(async () => {
      throw fail(`the page did not resolve ${name}: ${await page.getByTestId('name-help').textContent()}`);
    });
}

/**
 * Types the name, waits for the page's own look-up of it to finish (as a person would see the
 * platform before pressing Pull), selects the format, then times Pull → the file starts → the file is complete.
 */
export async function pullAndSave(
  page: Page,
  name: string,
  format: string,
  timeoutMs: number,
  beforeClick?: () => Promise<void>,
  save: BenchSave = 'stream',
): Promise<PullTiming> {
  await typeName(page, name, (message) => new PullFailedError(message));
  await page.getByLabel('Format').selectOption(format);
  await page.getByLabel('Save to').selectOption(save);
  if (save === 'file') await page.evaluate(OPFS_PICKER);
  await page.evaluate(STAMP_PHASES);
  await beforeClick?.();
  const started = performance.now();
  const startedWall = Date.now();
  let firstByteSeconds = Number.NaN;
  const streamed =
    save === 'stream'
      ? page.waitForEvent('download', { timeout: timeoutMs }).then((d) => {
          firstByteSeconds = (performance.now() - started) / 1000;
          return d;
        })
      : undefined;
  streamed?.catch(() => undefined);
  await page.getByRole('button', { name: 'Pull', exact: true }).click();
  const button = page.getByTestId(save === 'blob' ? 'download' : 'saved');
  const error = page.getByTestId('error');
  const watchdog = new AbortController();
  const outcome = await Promise.race([
    button.waitFor({ timeout: timeoutMs }).then(() => 'ready' as const),
    error.waitFor({ timeout: timeoutMs }).then(() => 'error' as const),
    stallWatch(page, watchdog.signal),
  ]).finally(() => watchdog.abort());
  if (outcome === 'error') {
    throw new PullFailedError(
      `pull of ${name} (${format}) failed in the page: [${await error.getAttribute('data-code')}] ${await error.textContent()}`,
    );
  }
  if (outcome !== 'ready') {
    const problems = pageProblems.get(page) ?? [];
    throw new PullFailedError(
      `pull of ${name} (${format}) made no progress for ${STALL_MS / 1000} s, no error shown; page state: ${outcome.state}` +
        (problems.length ? `; ${problems.slice(-5).join('; ')}` : ''),
    );
  }
  const buttonSeconds = (performance.now() - started) / 1000;
  if (save === 'file') {
    // Saved means the writable was closed: the file is final.
    const phases = await page.evaluate(() => window.__longshoreBench?.phases ?? {});
    const fileName = (await page.getByTestId('saved').locator('code').textContent()) ?? '';
    const bytes = await page.evaluate(
      async (n) => (await (await (await navigator.storage.getDirectory()).getFileHandle(n)).getFile()).size,
      fileName,
    );
    const remove = async () => {
      await page.evaluate(async (n) => (await navigator.storage.getDirectory()).removeEntry(n), fileName);
    };
    // Judged where Chromium keeps it (a persistent profile), like a downloaded file; removed after.
    const profileDir = profileDirs.get(page.context());
    const backing = profileDir ? await opfsBackingFile(profileDir, bytes) : undefined;
    if (!backing) await remove();
    return {
      file: backing,
      ...(backing ? { cleanup: remove } : {}),
      buttonSeconds,
      firstByteSeconds: phases['written'] ?? Number.NaN,
      downloadedSeconds: buttonSeconds,
      clickAt: started,
      phases,
      fileName,
      bytes,
    };
  }
  let download;
  if (streamed) download = await streamed;
  else {
    firstByteSeconds = buttonSeconds;
    [download] = await Promise.all([page.waitForEvent('download', { timeout: timeoutMs }), button.click()]);
  }
  // path() resolves when Chromium has written the whole file.
  const file = await download.path();
  const downloadedSeconds = (performance.now() - started) / 1000;
  const failure = await download.failure();
  if (file === null || failure) throw new PullFailedError(`download of ${name} (${format}) failed: ${failure}`);
  const phases = await page.evaluate(() => window.__longshoreBench?.phases ?? {});
  // When Chromium wrote the file's last byte (its mtime). `downloaded` comes later: Chromium
  // completes a download with an fdatasync of the whole file, then renames it (strace: 0.64 s for
  // 436 MB here, what `sync` takes for that many dirty pages), which no page can shorten.
  phases['last-write'] = ((await stat(file)).mtimeMs - startedWall) / 1000;
  return { clickAt: started, buttonSeconds, firstByteSeconds, downloadedSeconds, phases, fileName: download.suggestedFilename(), file };
}
