// The driver-neutral page the end-to-end tests are written against, once for every engine.
// Each driver (chromium.ts, firefox.ts, webkit.ts) implements only `PageDriver`'s primitives;
// everything else (text, attributes, waits, page errors) is built on `evaluate` in e2e-page.ts.

export type EngineName = 'chromium' | 'firefox' | 'webkit';

export const ENGINES: readonly EngineName[] = ['chromium', 'firefox', 'webkit'];

/** Keys `press` understands (the W3C WebDriver key table has these too). */
export type Key =
  'Tab' | 'Shift+Tab' | 'Enter' | 'Space' | 'Escape' | 'ArrowUp' | 'ArrowDown' | 'ArrowLeft' | 'ArrowRight' | 'Home' | 'End';

export interface CaughtDownload {
  /** The file name the page suggested (`<a download>`). */
  name: string;
  /** Where the bytes are on disk now. */
  path: string;
}

/** What a download that did not complete left behind. */
export interface FailedDownload {
  /** The browser's own verdict, where its driver reports one (Chromium: Playwright's `failure()`). */
  failure?: string;
  /** Bytes left under the final name (Firefox: an empty placeholder; WebKitGTK: the bytes it got). */
  leftBytes: number;
  /** Those bytes, moved out of the download directory. */
  leftPath?: string;
}

/** A download the browser has started (its file exists) and may still be writing. */
export interface PendingDownload {
  /** The file name the browser gave it (the page's suggestion). */
  readonly name: string;
  /** Wait until the file is complete; fails if the browser gave up on it. */
  finished(timeoutMs?: number): Promise<CaughtDownload>;
  /** Wait until the browser stopped writing it (for a download the page failed). */
  failed(timeoutMs?: number): Promise<FailedDownload>;
  /** Stop watching (the download directory is free for the next one). */
  release(): void;
}

export interface PageDriver {
  goto(url: string): Promise<void>;
  /** Run `source` (a function's text) with JSON arguments in the page; awaits a returned promise. */
  evaluate<T>(source: string, args: unknown[]): Promise<T>;
  /** Replace an input's value by typing, as a person would (input events per character). */
  fill(selector: string, value: string): Promise<void>;
  click(selector: string): Promise<void>;
  select(selector: string, value: string): Promise<void>;
  press(key: Key): Promise<void>;
  /** Type text into whatever has focus. */
  type(text: string): Promise<void>;
  setInputFiles(selector: string, path: string): Promise<void>;
  /** Run `trigger` and return the download it starts. */
  download(trigger: () => Promise<void>, timeoutMs: number): Promise<CaughtDownload>;
  /** Run `trigger` and return the download it starts as soon as the browser has begun writing it. */
  startDownload(trigger: () => Promise<void>, timeoutMs: number): Promise<PendingDownload>;
  /** Reload the page (the same storage), as the browser's reload button does. */
  reload(): Promise<void>;
  screenshot(path: string): Promise<void>;
  setViewport(width: number, height: number): Promise<void>;
  /** Errors the driver itself saw (uncaught exceptions, unhandled rejections), as text. */
  nativeErrors(): string[];
  close(): Promise<void>;
}

export interface EngineDriver {
  readonly name: EngineName;
  /** A fresh page with its own storage (IndexedDB starts empty). */
  newPage(options?: {
    width?: number;
    height?: number;
    /** Chromium only: the other drivers keep their own. */ userAgent?: string;
    /** A classic script run before the page's own scripts on every load (Chromium and Firefox). */
    initScript?: string;
  }): Promise<PageDriver>;
  close(): Promise<void>;
}
