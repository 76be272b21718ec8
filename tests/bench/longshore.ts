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
import { CdpBrowser, type CdpLike } from './cdp.ts';

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

/** The app in a Playwright page (the listing bench, which uploads files and types keys). */
export async function openApp(context: BrowserContext, url: string, beforeNavigate?: (page: Page) => Promise<void>): Promise<Page> {
  const page = await context.newPage();
  await beforeNavigate?.(page);
  await page.goto(url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  return page;
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
   * The downloaded archive on disk (Chromium's own file, in the session's download directory: not
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

async function stallWatch(page: AppPage, signal: AbortSignal): Promise<{ state: string }> {
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

/** True once the page's own look-up of a typed name has finished (the platform shows). */
const NAME_RESOLVED = `(() => {
  const text = document.querySelector('[data-testid="name-help"]')?.textContent ?? '';
  return /single image|multi-platform|·\\s*\\S/.test(text) && !/looking up/.test(text);
})()`;

/**
 * Types `name` into the page (Playwright: the listing bench) and waits for the page's own look-up of
 * it to finish; if it never does, rejects with `fail` of a message quoting the page's help text.
 */
export async function typeName(page: Page, name: string, fail: (message: string) => Error): Promise<void> {
  await page.getByLabel('Image', { exact: true }).fill(name);
  await page.waitForFunction(NAME_RESOLVED, undefined, { timeout: 30_000 }).catch(async () => {
    throw fail(`the page did not resolve ${name}: ${await page.getByTestId('name-help').textContent()}`);
  });
}

/** The element a `<label>` with exactly this text names (a string for the page: see STAMP_PHASES). */
const labelled = (label: string) =>
  `[...document.querySelectorAll('label')].find((l) => l.textContent.trim() === ${JSON.stringify(label)})?.control`;

/** Chromium for timed pulls: driven over a bare CDP pipe (cdp.ts says why not Playwright). */
export class PullBrowsers {
  #shared: CdpBrowser | undefined;
  #sharedDir: string | undefined;

  constructor(readonly mode: SessionMode) {}

  /** A browser profile with an empty IndexedDB (cold cache): its own browser, or a new context of one shared browser. */
  async open(): Promise<PullSession> {
    if (this.mode === 'incognito') {
      if (!this.#shared) {
        this.#sharedDir = await mkdtemp(join(tmpdir(), 'longshore-bench-shared-'));
        this.#shared = await CdpBrowser.launch(this.#sharedDir);
      }
      const browser = this.#shared;
      const { browserContextId } = (await browser.send('Target.createBrowserContext')) as { browserContextId: string };
      return new PullSession(browser, browserContextId, undefined, () =>
        browser.send('Target.disposeBrowserContext', { browserContextId }),
      );
    }
    const userDataDir = await mkdtemp(join(tmpdir(), 'longshore-bench-profile-'));
    const browser = await CdpBrowser.launch(userDataDir);
    return new PullSession(browser, undefined, userDataDir, async () => {
      await browser.close();
      await rm(userDataDir, { recursive: true, force: true });
    });
  }

  async close(): Promise<void> {
    await this.#shared?.close();
    if (this.#sharedDir) await rm(this.#sharedDir, { recursive: true, force: true });
    this.#shared = undefined;
  }
}

export class PullSession {
  readonly #downloadDir: Promise<string>;

  constructor(
    readonly browser: CdpBrowser,
    readonly contextId: string | undefined,
    /** The on-disk profile (where its origin private file system lives); undefined when incognito. */
    readonly userDataDir: string | undefined,
    private readonly dispose: () => Promise<unknown>,
  ) {
    // Downloads land in a directory of ours under their guid; the events say when each is complete.
    this.#downloadDir = mkdtemp(join(tmpdir(), 'longshore-bench-downloads-')).then(async (dir) => {
      await browser.send('Browser.setDownloadBehavior', {
        behavior: 'allowAndName',
        downloadPath: dir,
        eventsEnabled: true,
        ...(contextId ? { browserContextId: contextId } : {}),
      });
      return dir;
    });
  }

  downloadDir(): Promise<string> {
    return this.#downloadDir;
  }

  async close(): Promise<void> {
    await this.dispose();
    await rm(await this.#downloadDir, { recursive: true, force: true });
  }
}

export interface Download {
  /** When Chromium announced it (performance.now() of this process). */
  beganAt: number;
  suggestedFilename: string;
  /** Resolves with the file once complete; rejects if Chromium cancels it. */
  finished: Promise<string>;
}

/** The app in a page of a PullSession: Runtime and Input are the only domains it uses. */
export class AppPage {
  /** The page's uncaught errors and console errors, for the message of a failed pull. */
  readonly problems: string[] = [];

  private constructor(
    readonly session: PullSession,
    readonly cdp: CdpLike,
    readonly targetId: string,
  ) {}

  static async open(session: PullSession, url: string, beforeNavigate?: (page: AppPage) => Promise<void>): Promise<AppPage> {
    const { targetId } = (await session.browser.send('Target.createTarget', {
      url: 'about:blank',
      ...(session.contextId ? { browserContextId: session.contextId } : {}),
    })) as { targetId: string };
    const page = new AppPage(session, await session.browser.attach(targetId), targetId);
    page.cdp.on('Runtime.exceptionThrown', (e: { exceptionDetails?: { text?: string; exception?: { description?: string } } }) =>
      page.problems.push(`page error: ${e.exceptionDetails?.exception?.description ?? e.exceptionDetails?.text ?? '?'}`),
    );
    page.cdp.on('Runtime.consoleAPICalled', (e: { type: string; args: { value?: unknown; description?: string }[] }) => {
      if (e.type === 'error') page.problems.push(`console: ${e.args.map((a) => String(a.value ?? a.description ?? '')).join(' ')}`);
    });
    await page.cdp.send('Runtime.enable');
    await beforeNavigate?.(page);
    const nav = (await page.cdp.send('Page.navigate', { url })) as { errorText?: string };
    if (nav.errorText) throw new Error(`the app did not load from ${url}: ${nav.errorText}`);
    // Evaluations during the navigation fail (the old document goes): asked again until the new one answers.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = await page.evaluate(`document.readyState === 'complete' && !!${labelled('Image')}`).catch(() => false);
      if (ready) return page;
      if (Date.now() > deadline) throw new Error(`the app at ${url} did not show its Image field in 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Evaluates `expression` in the page (awaiting a promise), its value returned by value. */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const r = (await this.cdp.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })) as {
      result: { value?: T };
      exceptionDetails?: { text?: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /**
   * Waits until `expression` is truthy, checked at each change of the document (a MutationObserver
   * in the page, asked in spans of at most 30 s), and returns its value; rejects after `timeoutMs`.
   */
  async until<T = unknown>(expression: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const span = Math.max(0, Math.min(30_000, deadline - Date.now()));
      const value = await this.evaluate<T>(`new Promise((resolve) => {
        const check = () => { try { return ${expression}; } catch { return undefined; } };
        const now = check();
        if (now) return resolve(now);
        const mo = new MutationObserver(() => { const v = check(); if (v) { mo.disconnect(); clearTimeout(t); resolve(v); } });
        mo.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
        const t = setTimeout(() => { mo.disconnect(); resolve(undefined); }, ${span});
      })`);
      if (value) return value;
      if (Date.now() >= deadline) throw new Error(`waited ${timeoutMs / 1000} s for ${expression.trim().slice(0, 200)}`);
    }
  }

  /** Sets a labelled field's value as typing or picking would, with the events the app listens to. */
  async setField(label: string, value: string): Promise<void> {
    const done = await this.evaluate<boolean>(`(() => {
      const el = ${labelled(label)};
      if (!el) return false;
      el.focus();
      const proto = el instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
      Object.getOwnPropertyDescriptor(proto, 'value').set.call(el, ${JSON.stringify(value)});
      if (el.value !== ${JSON.stringify(value)}) return false;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
      return true;
    })()`);
    if (!done) throw new Error(`the page has no field "${label}" that takes ${value}`);
  }

  /** A real mouse click (user activation, as the save paths need) on the first enabled element matching `js`. */
  async click(js: string, what: string): Promise<void> {
    const at = await this.until<{ x: number; y: number }>(
      `(() => {
        const el = ${js};
        if (!el || el.disabled) return undefined;
        el.scrollIntoView({ block: 'center' });
        const r = el.getBoundingClientRect();
        return r.width > 0 ? { x: r.x + r.width / 2, y: r.y + r.height / 2 } : undefined;
      })()`,
      30_000,
    ).catch(() => {
      throw new Error(`the page shows no enabled ${what} to click`);
    });
    for (const type of ['mouseMoved', 'mousePressed', 'mouseReleased'])
      await this.cdp.send('Input.dispatchMouseEvent', { type, x: at.x, y: at.y, button: 'left', clickCount: 1 });
  }

  /** The next download this page's session starts. */
  nextDownload(timeoutMs: number): Promise<Download> {
    const browser = this.session.browser;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no download began in ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const off = browser.on('Browser.downloadWillBegin', (e: { guid: string; suggestedFilename: string }) => {
        off();
        clearTimeout(timer);
        const beganAt = performance.now();
        const finished = new Promise<string>((done, failed) => {
          const offProgress = browser.on('Browser.downloadProgress', (p: { guid: string; state: string }) => {
            if (p.guid !== e.guid || p.state === 'inProgress') return;
            offProgress();
            if (p.state === 'completed') void this.session.downloadDir().then((dir) => done(join(dir, e.guid)));
            else failed(new Error(`Chromium ended the download ${e.suggestedFilename}: ${p.state}`));
          });
        });
        finished.catch(() => undefined);
        resolve({ beganAt, suggestedFilename: e.suggestedFilename, finished });
      });
    });
  }

  /** A second session on this page (probes that attach and detach on their own). */
  newSession(): Promise<CdpLike> {
    return this.session.browser.attach(this.targetId);
  }

  async close(): Promise<void> {
    await this.cdp.detach();
    await this.session.browser.send('Target.closeTarget', { targetId: this.targetId }).catch(() => undefined);
  }
}

/** The formats the built page offers, and the one selected at start. */
export async function pageFormats(page: AppPage): Promise<{ ids: string[]; selected: string }> {
  return page.evaluate(`(() => {
    const select = ${labelled('Format')};
    return { ids: [...select.options].map((o) => o.value), selected: select.value };
  })()`);
}

/**
 * Types the name, waits for the page's own look-up of it to finish (as a person would see the
 * platform before pressing Pull), selects the format, then times Pull → the file starts → the file is complete.
 */
export async function pullAndSave(
  page: AppPage,
  name: string,
  format: string,
  timeoutMs: number,
  beforeClick?: () => Promise<void>,
  save: BenchSave = 'stream',
): Promise<PullTiming> {
  await page.setField('Image', name);
  await page.until(NAME_RESOLVED, 30_000).catch(async () => {
    throw new PullFailedError(
      `the page did not resolve ${name}: ${await page.evaluate(`document.querySelector('[data-testid="name-help"]')?.textContent`)}`,
    );
  });
  await page.setField('Format', format);
  await page.setField('Save to', save);
  if (save === 'file') await page.evaluate(OPFS_PICKER);
  await page.evaluate(STAMP_PHASES);
  await beforeClick?.();
  const started = performance.now();
  const startedWall = Date.now();
  const streamed = save === 'stream' ? page.nextDownload(timeoutMs) : undefined;
  streamed?.catch(() => undefined);
  await page.click(`[...document.querySelectorAll('button')].find((b) => b.textContent.trim() === 'Pull')`, 'Pull button');
  const watchdog = new AbortController();
  const outcome = await Promise.race([
    page.until(
      `(document.querySelector('[data-testid="${save === 'blob' ? 'download' : 'saved'}"]') && 'ready') || (document.querySelector('[data-testid="error"]') && 'error')`,
      timeoutMs,
    ) as Promise<'ready' | 'error'>,
    stallWatch(page, watchdog.signal),
  ]).finally(() => watchdog.abort());
  if (outcome === 'error') {
    const shown = await page.evaluate<string>(
      `(() => { const e = document.querySelector('[data-testid="error"]'); return '[' + e.getAttribute('data-code') + '] ' + e.textContent; })()`,
    );
    throw new PullFailedError(`pull of ${name} (${format}) failed in the page: ${shown}`);
  }
  if (outcome !== 'ready') {
    throw new PullFailedError(
      `pull of ${name} (${format}) made no progress for ${STALL_MS / 1000} s, no error shown; page state: ${outcome.state}` +
        (page.problems.length ? `; ${page.problems.slice(-5).join('; ')}` : ''),
    );
  }
  const buttonSeconds = (performance.now() - started) / 1000;
  const phasesNow = () => page.evaluate<Record<string, number>>('window.__longshoreBench?.phases ?? {}');
  if (save === 'file') {
    // Saved means the writable was closed: the file is final.
    const phases = await phasesNow();
    const fileName = (await page.evaluate<string>(`document.querySelector('[data-testid="saved"] code')?.textContent ?? ''`)) ?? '';
    const inOpfs = (op: string) => `(async () => (await navigator.storage.getDirectory())${op})()`;
    const bytes = await page.evaluate<number>(
      inOpfs(`.getFileHandle(${JSON.stringify(fileName)}).then((h) => h.getFile()).then((f) => f.size)`),
    );
    const remove = async () => {
      await page.evaluate(inOpfs(`.removeEntry(${JSON.stringify(fileName)})`));
    };
    // Judged where Chromium keeps it (a persistent profile), like a downloaded file; removed after.
    const profileDir = page.session.userDataDir;
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
  let download: Download;
  if (streamed) download = await streamed;
  else {
    const next = page.nextDownload(timeoutMs);
    await page.click(`document.querySelector('[data-testid="download"]')`, 'Download button');
    download = await next;
  }
  const firstByteSeconds = (download.beganAt - started) / 1000;
  // Chromium reports it complete once the whole file is written.
  const file = await download.finished.catch((e: Error) => {
    throw new PullFailedError(`download of ${name} (${format}) failed: ${e.message}`);
  });
  const downloadedSeconds = (performance.now() - started) / 1000;
  const phases = await phasesNow();
  // When Chromium wrote the file's last byte (its mtime). `downloaded` comes later: Chromium
  // completes a download with an fdatasync of the whole file, then renames it (strace: 0.64 s for
  // 436 MB here, what `sync` takes for that many dirty pages), which no page can shorten.
  phases['last-write'] = ((await stat(file)).mtimeMs - startedWall) / 1000;
  return { clickAt: started, buttonSeconds, firstByteSeconds, downloadedSeconds, phases, fileName: download.suggestedFilename, file };
}
