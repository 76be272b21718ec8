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
  }): Promise<PageDriver>;
  close(): Promise<void>;
}
