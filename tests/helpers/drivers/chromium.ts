// Debian's Chromium through playwright-core (CDP). Each page gets its own browser context, so its
// own IndexedDB; downloads are Playwright's download events.
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../browser.ts';
import { ERROR_TRAP } from './in-page.ts';
import type { EngineDriver, FailedDownload, Key, PageDriver, PendingDownload } from './types.ts';

const KEYS: Record<Key, string> = {
  Tab: 'Tab',
  'Shift+Tab': 'Shift+Tab',
  Enter: 'Enter',
  Space: ' ',
  Escape: 'Escape',
  ArrowUp: 'ArrowUp',
  ArrowDown: 'ArrowDown',
  ArrowLeft: 'ArrowLeft',
  ArrowRight: 'ArrowRight',
  Home: 'Home',
  End: 'End',
};

class ChromiumPage implements PageDriver {
  readonly #errors: string[] = [];

  constructor(
    readonly page: Page,
    readonly dir: string,
  ) {
    page.on('pageerror', (e) => this.#errors.push(`pageerror: ${e.stack ?? e.message}`));
  }

  async goto(url: string): Promise<void> {
    await this.page.goto(url);
  }

  evaluate<T>(source: string, args: unknown[]): Promise<T> {
    return this.page.evaluate(`(${source})(...${JSON.stringify(args)})`) as Promise<T>;
  }

  async fill(selector: string, value: string): Promise<void> {
    await this.page.fill(selector, '');
    await this.page.locator(selector).pressSequentially(value);
  }

  async click(selector: string): Promise<void> {
    await this.page.click(selector);
  }

  async select(selector: string, value: string): Promise<void> {
    await this.page.selectOption(selector, value);
  }

  async press(key: Key): Promise<void> {
    await this.page.keyboard.press(KEYS[key]);
  }

  async type(text: string): Promise<void> {
    await this.page.keyboard.type(text);
  }

  async setInputFiles(selector: string, path: string): Promise<void> {
    await this.page.setInputFiles(selector, path);
  }

  async download(trigger: () => Promise<void>, timeoutMs: number) {
    const [download] = await Promise.all([this.page.waitForEvent('download', { timeout: timeoutMs }), trigger()]);
    const name = download.suggestedFilename();
    const path = join(this.dir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${name}`);
    await download.saveAs(path);
    return { name, path };
  }

  async startDownload(trigger: () => Promise<void>, timeoutMs: number): Promise<PendingDownload> {
    const [download] = await Promise.all([this.page.waitForEvent('download', { timeout: timeoutMs }), trigger()]);
    const name = download.suggestedFilename();
    return {
      name,
      finished: async () => {
        const path = join(this.dir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${name}`);
        await download.saveAs(path);
        const failure = await download.failure();
        if (failure) throw new Error(`chromium: the download ${name} failed: ${failure}`);
        return { name, path };
      },
      failed: async (): Promise<FailedDownload> => {
        // Playwright keeps a failed download's bytes to itself: nothing is left under the final name.
        const failure = await download.failure();
        if (failure === null) throw new Error(`chromium: the download ${name} completed`);
        return { failure, leftBytes: 0 };
      },
      release: () => undefined,
    };
  }

  async reload(): Promise<void> {
    await this.page.reload();
  }

  async screenshot(path: string): Promise<void> {
    await this.page.screenshot({ path, fullPage: true });
  }

  async setViewport(width: number, height: number): Promise<void> {
    await this.page.setViewportSize({ width, height });
  }

  nativeErrors(): string[] {
    return this.#errors.slice();
  }

  async close(): Promise<void> {
    await this.page.context().close();
  }
}

export async function chromiumEngine(dir: string): Promise<EngineDriver> {
  const browser: Browser = await launchChromium();
  return {
    name: 'chromium',
    async newPage(options = {}) {
      const context = await browser.newContext({
        acceptDownloads: true,
        viewport: { width: options.width ?? 1280, height: options.height ?? 900 },
        ...(options.userAgent ? { userAgent: options.userAgent } : {}),
      });
      await context.addInitScript(ERROR_TRAP);
      if (options.initScript) await context.addInitScript(options.initScript);
      return new ChromiumPage(await context.newPage(), dir);
    },
    close: () => browser.close(),
  };
}
