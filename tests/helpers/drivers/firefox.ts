// Debian's Firefox ESR through WebDriver BiDi (puppeteer-core; no browser is downloaded: the
// executable is the system one). Each page gets its own user context (own IndexedDB). Downloads go
// to a directory set by prefs and are picked up when Firefox has renamed its `.part` file.
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { ERROR_TRAP } from './in-page.ts';
import type { CaughtDownload, EngineDriver, Key, PageDriver } from './types.ts';

export const FIREFOX_PATH = '/usr/bin/firefox-esr';

const KEYS: Record<Exclude<Key, 'Shift+Tab'>, string> = {
  Tab: 'Tab',
  Enter: 'Enter',
  Space: 'Space',
  Escape: 'Escape',
  ArrowUp: 'ArrowUp',
  ArrowDown: 'ArrowDown',
  ArrowLeft: 'ArrowLeft',
  ArrowRight: 'ArrowRight',
  Home: 'Home',
  End: 'End',
};

/** Downloads land in one directory per browser; one download at a time is awaited per page. */
class FirefoxPage implements PageDriver {
  readonly #errors: string[] = [];

  constructor(
    readonly page: Page,
    readonly downloadDir: string,
    readonly outDir: string,
    readonly lock: { busy: Promise<unknown> },
  ) {
    page.on('pageerror', (e) => this.#errors.push(`pageerror: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`));
  }

  async goto(url: string): Promise<void> {
    await this.page.goto(url);
  }

  evaluate<T>(source: string, args: unknown[]): Promise<T> {
    return this.page.evaluate(`(${source})(...${JSON.stringify(args)})`) as Promise<T>;
  }

  async fill(selector: string, value: string): Promise<void> {
    await this.page.$eval(selector, (el) => {
      const input = el as HTMLInputElement;
      input.focus();
      input.value = '';
      input.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await this.page.type(selector, value);
  }

  async click(selector: string): Promise<void> {
    await this.page.locator(selector).click();
  }

  async select(selector: string, value: string): Promise<void> {
    await this.page.select(selector, value);
  }

  async press(key: Key): Promise<void> {
    if (key === 'Shift+Tab') {
      await this.page.keyboard.down('Shift');
      await this.page.keyboard.press('Tab');
      await this.page.keyboard.up('Shift');
      return;
    }
    await this.page.keyboard.press(KEYS[key] as Parameters<Page['keyboard']['press']>[0]);
  }

  async type(text: string): Promise<void> {
    await this.page.keyboard.type(text);
  }

  async setInputFiles(selector: string, path: string): Promise<void> {
    const handle = await this.page.$(selector);
    if (!handle) throw new Error(`no element matches ${selector}`);
    await (handle as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(path);
  }

  async download(trigger: () => Promise<void>, timeoutMs: number): Promise<CaughtDownload> {
    // Downloads share the directory: take turns, so a new file is surely this page's.
    const previous = this.lock.busy;
    let release!: () => void;
    this.lock.busy = new Promise<void>((r) => (release = r));
    await previous.catch(() => undefined);
    try {
      const before = new Set(await readdir(this.downloadDir));
      await trigger();
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const names = await readdir(this.downloadDir);
        const fresh = names.filter((n) => !before.has(n) && !n.endsWith('.part'));
        const partial = names.some((n) => !before.has(n) && n.endsWith('.part'));
        if (fresh.length === 1 && !partial) {
          // Firefox may write under a temporary name first and rename it: a file that vanishes
          // or still grows is not the download yet.
          const name = fresh[0]!;
          const size = await stat(join(this.downloadDir, name)).then(
            (s) => s.size,
            () => -1,
          );
          await new Promise((r) => setTimeout(r, 200));
          const again = await stat(join(this.downloadDir, name)).then(
            (s) => s.size,
            () => -2,
          );
          const settled = (await readdir(this.downloadDir)).filter((n) => !before.has(n));
          if (size >= 0 && again === size && settled.length === 1 && settled[0] === name) {
            const path = join(this.outDir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${name}`);
            await rename(join(this.downloadDir, name), path);
            return { name, path };
          }
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`Firefox: no download appeared in ${this.downloadDir} within ${timeoutMs} ms`);
    } finally {
      release();
    }
  }

  async screenshot(path: string): Promise<void> {
    await this.page.screenshot({ path: path as `${string}.png`, fullPage: true });
  }

  async setViewport(width: number, height: number): Promise<void> {
    await this.page.setViewport({ width, height });
  }

  nativeErrors(): string[] {
    return this.#errors.slice();
  }

  async close(): Promise<void> {
    await this.page.browserContext().close();
  }
}

export async function firefoxEngine(dir: string): Promise<EngineDriver> {
  if (!existsSync(FIREFOX_PATH)) throw new Error(`${FIREFOX_PATH} is missing: apt-get install firefox-esr`);
  const downloadDir = join(dir, 'firefox-downloads');
  await mkdir(downloadDir, { recursive: true });
  const browser: Browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX_PATH,
    headless: true,
    extraPrefsFirefox: {
      'browser.download.dir': downloadDir,
      'browser.download.folderList': 2,
      'browser.download.useDownloadDir': true,
      'browser.download.always_ask_before_handling_new_types': false,
      // Written elsewhere and moved here when complete: a file in the directory is a whole download.
      'browser.download.start_downloads_in_tmp_dir': true,
      'browser.download.alwaysOpenPanel': false,
      'browser.download.manager.showWhenStarting': false,
      'browser.helperApps.neverAsk.saveToDisk': 'application/x-tar,application/octet-stream,application/gzip',
      // The network is closed: no update checks, telemetry or captive-portal probes.
      'app.update.enabled': false,
      'network.captive-portal-service.enabled': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'toolkit.telemetry.enabled': false,
    },
  });
  const lock = { busy: Promise.resolve() as Promise<unknown> };
  return {
    name: 'firefox',
    async newPage(options = {}) {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      await page.setViewport({ width: options.width ?? 1280, height: options.height ?? 900 });
      await page.evaluateOnNewDocument(ERROR_TRAP);
      return new FirefoxPage(page, downloadDir, dir, lock);
    },
    close: () => browser.close(),
  };
}
