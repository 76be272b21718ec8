// Debian's Firefox ESR through WebDriver BiDi (puppeteer-core; no browser is downloaded: the
// executable is the system one). Each page gets its own user context (own IndexedDB). Downloads go
// to a directory set by prefs (downloads.ts): Firefox writes `<random>.<name>.part` beside an empty
// file under the final name and renames the part over it when the download completes.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { ERROR_TRAP } from './in-page.ts';
import { DownloadDirectory } from './downloads.ts';
import type { CaughtDownload, EngineDriver, Key, PageDriver, PendingDownload } from './types.ts';

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

/** Downloads land in one directory per browser, one download at a time (downloads.ts). */
class FirefoxPage implements PageDriver {
  readonly #errors: string[] = [];

  constructor(
    readonly page: Page,
    readonly downloads: DownloadDirectory,
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
    return (await this.downloads.start(trigger, timeoutMs)).finished(timeoutMs);
  }

  startDownload(trigger: () => Promise<void>, timeoutMs: number): Promise<PendingDownload> {
    return this.downloads.start(trigger, timeoutMs);
  }

  async reload(): Promise<void> {
    await this.page.reload();
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
      // Written here as `.part` beside its final name: a streamed download is seen while it runs.
      'browser.download.start_downloads_in_tmp_dir': false,
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
  const downloads = new DownloadDirectory(downloadDir, dir, { isPartial: (n) => n.endsWith('.part') }, 'Firefox');
  return {
    name: 'firefox',
    async newPage(options = {}) {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      await page.setViewport({ width: options.width ?? 1280, height: options.height ?? 900 });
      await page.evaluateOnNewDocument(ERROR_TRAP);
      if (options.initScript) await page.evaluateOnNewDocument(options.initScript);
      return new FirefoxPage(page, downloads);
    },
    close: () => browser.close(),
  };
}
