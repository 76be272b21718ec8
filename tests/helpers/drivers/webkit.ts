// WebKit (WebKitGTK, Safari's engine) through Debian's WebKitWebDriver: classic W3C WebDriver
// over HTTP (a small client on fetch, below), under its own Xvfb and D-Bus session. The browser
// is Epiphany (GNOME Web, Debian's epiphany-browser) in automation mode, the WebKitGTK browser
// people use; E2E_WEBKIT_BROWSER=minibrowser drives WebKitGTK's MiniBrowser instead. Epiphany 43.1
// aborts on about 1 start in 3–5 here: its automation handler for "create a web view" asks for the
// application's active window (ephy_embed_container_get_active_child, seen in a gdb backtrace)
// before Epiphany has made its first window, an assertion. The session request then fails with
// "Unknown error creating top level browsing context" and is asked again (newSession below).
// WebKitWebDriver holds one session at a time, so an engine has one page open at once.
// Each page is its own WebDriver session (an ephemeral website data store: IndexedDB starts
// empty). WebDriver cannot hand over a download: a Blob the page offers is captured in the page
// (in-page.ts DOWNLOAD_TRAP) and read back in base64 chunks; any other download (the service
// worker's streamed one) is written by WebKitGTK into the XDG download directory this driver sets
// (downloads.ts), under its final name while it is written.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DOWNLOAD_TRAP, ERROR_TRAP } from './in-page.ts';
import { DownloadDirectory } from './downloads.ts';
import type { CaughtDownload, EngineDriver, Key, PageDriver, PendingDownload } from './types.ts';

export const WEBKIT_DRIVER = '/usr/bin/WebKitWebDriver';
export const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
export const EPIPHANY = '/usr/bin/epiphany';

/** The browser WebKitWebDriver launches, and the flag that puts it under automation. */
function webkitBrowser(): { binary: string; args: string[] } {
  const wanted = process.env['E2E_WEBKIT_BROWSER'] ?? 'epiphany';
  if (wanted === 'epiphany') return { binary: EPIPHANY, args: ['--automation-mode'] };
  if (wanted === 'minibrowser') return { binary: MINIBROWSER, args: ['--automation'] };
  throw new Error(`E2E_WEBKIT_BROWSER: epiphany or minibrowser, got "${wanted}"`);
}

/** Session requests that fail because the browser aborted while starting are asked again this often. */
const BROWSER_START_ATTEMPTS = 10;
/**
 * Epiphany's start-up aborts come in runs at times (10 in a row seen once in a full suite): after
 * this many in a row the session is asked of MiniBrowser (the same WebKitGTK engine) instead, and
 * the test log says so.
 */
const EPIPHANY_ATTEMPTS = 5;

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
// W3C WebDriver §17.4.2, the normalised key table.
const KEYS: Record<Exclude<Key, 'Shift+Tab'>, string> = {
  Tab: '\uE004',
  Enter: '\uE007',
  Space: ' ',
  Escape: '\uE00C',
  ArrowUp: '\uE013',
  ArrowDown: '\uE015',
  ArrowLeft: '\uE012',
  ArrowRight: '\uE014',
  Home: '\uE011',
  End: '\uE010',
};
const SHIFT = '\uE008';

class WebDriverSession {
  constructor(
    readonly base: string,
    readonly id: string,
  ) {}

  async cmd<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}/session/${this.id}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as { value: T & { error?: string; message?: string } };
    if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${json.value?.error}: ${json.value?.message}`);
    return json.value;
  }

  async element(selector: string): Promise<string> {
    const v = await this.cmd<Record<string, string>>('POST', '/element', { using: 'css selector', value: selector });
    return v[ELEMENT]!;
  }
}

class WebKitPage implements PageDriver {
  /** Errors the trap saw in documents this page has left (a reload starts a new trap). */
  readonly #earlier: string[] = [];

  constructor(
    readonly session: WebDriverSession,
    readonly dir: string,
    readonly downloads: DownloadDirectory,
  ) {}

  async #traps(): Promise<void> {
    await this.session.cmd('POST', '/execute/sync', { script: `${ERROR_TRAP}\n${DOWNLOAD_TRAP}`, args: [] });
  }

  async goto(url: string): Promise<void> {
    await this.session.cmd('POST', '/url', { url });
    await this.#traps();
  }

  async reload(): Promise<void> {
    this.#earlier.push(...(await this.evaluate<string[]>('() => (window.__e2eErrors || []).slice()', []).catch(() => [])));
    await this.session.cmd('POST', '/refresh', {});
    await this.#traps();
  }

  async evaluate<T>(source: string, args: unknown[]): Promise<T> {
    const script = `const done = arguments[arguments.length - 1];
      Promise.resolve().then(() => (${source})(...${JSON.stringify(args)}))
        .then((value) => done({ ok: true, value: value === undefined ? null : value }), (e) => done({ ok: false, error: String(e && e.stack || e) }));`;
    const r = await this.session.cmd<{ ok: boolean; value?: T; error?: string }>('POST', '/execute/async', { script, args: [] });
    if (!r.ok) throw new Error(`in the page: ${r.error}`);
    return r.value as T;
  }

  async fill(selector: string, value: string): Promise<void> {
    await this.evaluate(
      `(sel) => {
      const input = document.querySelector(sel);
      input.focus();
      input.value = '';
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }`,
      [selector],
    );
    if (!value) return;
    const el = await this.session.element(selector);
    await this.session.cmd('POST', `/element/${el}/value`, { text: value });
  }

  async click(selector: string): Promise<void> {
    const el = await this.session.element(selector);
    await this.session.cmd('POST', `/element/${el}/click`, {});
  }

  async select(selector: string, value: string): Promise<void> {
    const el = await this.session.element(`${selector} option[value="${value}"]`);
    await this.session.cmd('POST', `/element/${el}/click`, {});
  }

  async press(key: Key): Promise<void> {
    const keys = key === 'Shift+Tab' ? [SHIFT, KEYS.Tab] : [KEYS[key]];
    const down = keys.map((value) => ({ type: 'keyDown', value }));
    const up = keys
      .slice()
      .reverse()
      .map((value) => ({ type: 'keyUp', value }));
    await this.session.cmd('POST', '/actions', { actions: [{ type: 'key', id: 'keyboard', actions: [...down, ...up] }] });
    await this.session.cmd('DELETE', '/actions');
  }

  async type(text: string): Promise<void> {
    const actions = [...text].flatMap((value) => [
      { type: 'keyDown', value },
      { type: 'keyUp', value },
    ]);
    await this.session.cmd('POST', '/actions', { actions: [{ type: 'key', id: 'keyboard', actions }] });
    await this.session.cmd('DELETE', '/actions');
  }

  async setInputFiles(selector: string, path: string): Promise<void> {
    const el = await this.session.element(selector);
    await this.session.cmd('POST', `/element/${el}/value`, { text: path });
  }

  startDownload(trigger: () => Promise<void>, timeoutMs: number): Promise<PendingDownload> {
    return this.downloads.start(trigger, timeoutMs);
  }

  async download(trigger: () => Promise<void>, timeoutMs: number): Promise<CaughtDownload> {
    const before = await this.evaluate<number>('() => window.__e2eDownloads.length', []);
    const trapped = async () => (await this.evaluate<number>('() => window.__e2eDownloads.length', [])) > before;
    // A Blob the trap kept, or a download WebKitGTK writes itself: whichever comes.
    const real = await this.downloads.start(trigger, timeoutMs, trapped);
    if (real) return real.finished(timeoutMs);
    const { name, size } = await this.evaluate<{ name: string; size: number }>(
      `(i) => window.__e2eDownloads[i].then((d) => ({ name: d.name, size: d.blob.size }))`,
      [before],
    );
    const chunks: Buffer[] = [];
    const CHUNK = 4 * 1024 * 1024;
    for (let at = 0; at < size; at += CHUNK) {
      const b64 = await this.evaluate<string>(
        `(i, at, end) => window.__e2eDownloads[i].then((d) => new Promise((resolve, reject) => {
        const r = new FileReader();
        r.onload = () => resolve(String(r.result).slice(String(r.result).indexOf(',') + 1));
        r.onerror = () => reject(r.error);
        r.readAsDataURL(d.blob.slice(at, end));
      }))`,
        [before, at, Math.min(size, at + CHUNK)],
      );
      chunks.push(Buffer.from(b64, 'base64'));
    }
    const path = join(this.dir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${name}`);
    await writeFile(path, Buffer.concat(chunks));
    return { name, path };
  }

  async screenshot(path: string): Promise<void> {
    const b64 = await this.session.cmd<string>('GET', '/screenshot');
    await writeFile(path, Buffer.from(b64, 'base64'));
  }

  async setViewport(width: number, height: number): Promise<void> {
    // The window rect includes MiniBrowser's toolbar; size the window so the viewport is `width` wide.
    const inner = await this.evaluate<[number, number]>(
      '() => [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]',
      [],
    );
    await this.session.cmd('POST', '/window/rect', { width: width + inner[0], height: height + inner[1] });
  }

  nativeErrors(): string[] {
    return this.#earlier.slice();
  }

  async close(): Promise<void> {
    await this.session.cmd('DELETE', '').catch(() => undefined);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Xvfb on a display it picks itself (-displayfd: no race between parallel test files). */
async function startXvfb(): Promise<{ proc: ChildProcess; display: string }> {
  const proc = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1400x1000x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  const display = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdio[3]!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(`:${out.trim()}`);
    });
    proc.on('exit', (code) => reject(new Error(`Xvfb exited (${code}) before giving its display`)));
  });
  return { proc, display };
}

export async function webkitEngine(dir: string): Promise<EngineDriver> {
  const browser = webkitBrowser();
  for (const bin of [WEBKIT_DRIVER, browser.binary]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: apt-get install webkit2gtk-driver epiphany-browser xvfb dbus`);
  }
  const configDir = join(dir, 'webkit-config');
  const downloadDir = join(dir, 'webkit-downloads');
  await mkdir(configDir, { recursive: true });
  await mkdir(downloadDir, { recursive: true });
  await writeFile(join(configDir, 'user-dirs.dirs'), `XDG_DOWNLOAD_DIR="${downloadDir}"\n`);
  const downloads = new DownloadDirectory(downloadDir, dir, { isPartial: () => false }, 'WebKit');
  const xvfb = await startXvfb();
  const port = await freePort();
  // As root in a container, WebKitGTK's bubblewrap sandbox cannot start.
  const env = {
    ...process.env,
    DISPLAY: xvfb.display,
    WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS: '1',
    // WebKitGTK saves downloads into the XDG download directory (GLib reads it from user-dirs.dirs).
    XDG_CONFIG_HOME: configDir,
    GSETTINGS_BACKEND: 'memory',
    NO_AT_BRIDGE: '1',
  };
  const driver = spawn('dbus-run-session', ['--', WEBKIT_DRIVER, `--port=${port}`, '--host=127.0.0.1'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let log = '';
  driver.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/status`)).ok) break;
    } catch {
      if (i > 200) throw new Error(`WebKitWebDriver did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const sessions = new Set<WebKitPage>();
  const newSession = async (): Promise<string> => {
    for (let attempt = 1; ; attempt++) {
      const fallback = browser.binary === EPIPHANY && attempt > EPIPHANY_ATTEMPTS;
      const options = fallback ? { binary: MINIBROWSER, args: ['--automation'] } : browser;
      if (fallback && attempt === EPIPHANY_ATTEMPTS + 1)
        console.warn(`webkit: Epiphany aborted ${EPIPHANY_ATTEMPTS} starts in a row; this page runs in MiniBrowser`);
      const res = await fetch(`${base}/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          capabilities: { alwaysMatch: { 'webkitgtk:browserOptions': options, timeouts: { script: 120_000 } } },
        }),
      });
      const json = (await res.json()) as { value: { sessionId?: string; message?: string } };
      if (json.value.sessionId) return json.value.sessionId;
      const aborted = /creating top level browsing context/i.test(json.value.message ?? '');
      if (!aborted || attempt >= BROWSER_START_ATTEMPTS)
        throw new Error(`WebKitWebDriver: no session after ${attempt} attempt(s): ${json.value.message}\n${log}`);
    }
  };
  return {
    name: 'webkit',
    async newPage(options = {}) {
      // Scripts go in after each navigation here (no WebDriver command runs one before the page's own).
      if (options.initScript) throw new Error('WebKit: no script can run before the page loads under WebDriver');
      const sessionId = await newSession();
      const page = new WebKitPage(new WebDriverSession(base, sessionId), dir, downloads);
      sessions.add(page);
      const close = page.close.bind(page);
      page.close = async () => {
        sessions.delete(page);
        await close();
      };
      await page.session.cmd('POST', '/window/rect', { width: options.width ?? 1280, height: options.height ?? 900 });
      return page;
    },
    async close() {
      await Promise.all([...sessions].map((s) => s.close()));
      if (driver.pid) {
        try {
          process.kill(-driver.pid, 'SIGTERM');
        } catch {
          /* gone already */
        }
      }
      xvfb.proc.kill('SIGTERM');
    },
  };
}
