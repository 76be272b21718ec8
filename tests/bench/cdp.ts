// The Chrome DevTools Protocol over Chromium's --remote-debugging-pipe, with no domain enabled but
// what the caller asks for. Timed pulls are driven through this, not Playwright: Playwright enables
// the Network domain on every page and worker it attaches to, and Chromium then reports every
// network chunk to it (the renderer, the browser process and this process all pay: figures in
// tests/bench/README.md, "Why not Playwright for the pulls"), a cost no user of the page has.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { CDPSession } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../helpers/browser.ts';

/**
 * What the bench's probes need of a CDP session (`fromPlaywright` adapts Playwright's). The caller
 * names the shape of a reply or an event it expects; nothing checks it.
 */
export interface CdpLike {
  send<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  on<E = unknown>(event: string, handler: (params: E) => void): unknown;
  once<E = unknown>(event: string, handler: (params: E) => void): unknown;
  detach(): Promise<void>;
}

/** A Playwright CDP session (the listing bench's pages) as a CdpLike. */
export function fromPlaywright(session: CDPSession): CdpLike {
  return {
    send: <T>(method: string, params?: Record<string, unknown>) => session.send(method as never, params as never) as Promise<T>,
    on: (event, handler) => session.on(event as never, handler as never),
    once: (event, handler) => session.once(event as never, handler as never),
    detach: () => session.detach(),
  };
}

type Handler = (params: never) => void;

interface Message {
  id?: number;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { message: string };
  sessionId?: string;
}

/** Replies slower than this mean the browser is gone or wedged: the caller gets an error, not a hang. */
const REPLY_TIMEOUT_MS = 120_000;

export class CdpBrowser {
  readonly #child: ChildProcess;
  readonly #out: Writable;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; method: string; timer: NodeJS.Timeout }>();
  /** Listeners by session id ('' for the browser's own) and event name. */
  readonly #listeners = new Map<string, Map<string, Set<Handler>>>();
  #nextId = 1;
  #exited: Promise<void>;
  #gone: Error | undefined;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#out = child.stdio[3] as Writable;
    const input = child.stdio[4] as Readable;
    let held: Buffer[] = [];
    input.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let end = chunk.indexOf(0); end >= 0; end = chunk.indexOf(0, start)) {
        held.push(chunk.subarray(start, end));
        const text = Buffer.concat(held).toString('utf8');
        held = [];
        start = end + 1;
        this.#dispatch(JSON.parse(text) as Message);
      }
      if (start < chunk.length) held.push(chunk.subarray(start));
    });
    input.on('error', () => undefined);
    this.#out.on('error', () => undefined);
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.#gone = new Error(`Chromium exited (${signal ?? `code ${code}`})`);
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`${p.method}: ${this.#gone.message}`));
        }
        this.#pending.clear();
        resolve();
      }),
    );
  }

  /** Debian's Chromium, headless, with the e2e tests' flags and a profile in `userDataDir`. */
  static async launch(userDataDir: string): Promise<CdpBrowser> {
    const child = spawn(
      CHROMIUM_PATH,
      [
        ...CHROMIUM_ARGS,
        '--headless',
        '--remote-debugging-pipe',
        `--user-data-dir=${userDataDir}`,
        '--no-default-browser-check',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    const browser = new CdpBrowser(child);
    await browser.send('Browser.getVersion');
    return browser;
  }

  #dispatch(msg: Message): void {
    if (msg.id !== undefined) {
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result ?? {});
      return;
    }
    const handlers = this.#listeners.get(msg.sessionId ?? '')?.get(msg.method ?? '');
    if (handlers) for (const h of [...handlers]) h((msg.params ?? {}) as never);
  }

  send<T = unknown>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> {
    if (this.#gone) return Promise.reject(new Error(`${method}: ${this.#gone.message}`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no reply from Chromium in ${REPLY_TIMEOUT_MS / 1000} s`));
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method, timer });
      this.#out.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  on<E = unknown>(event: string, handler: (params: E) => void, sessionId = ''): () => void {
    let byEvent = this.#listeners.get(sessionId);
    if (!byEvent) this.#listeners.set(sessionId, (byEvent = new Map()));
    let set = byEvent.get(event);
    if (!set) byEvent.set(event, (set = new Set()));
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }

  /** A new flattened session attached to `targetId`. */
  async attach(targetId: string): Promise<CdpLike> {
    const { sessionId } = await this.send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true });
    return {
      send: (method, params) => this.send(method, params, sessionId),
      on: (event, handler) => this.on(event, handler, sessionId),
      once: <E>(event: string, handler: (params: E) => void) => {
        const off = this.on<E>(
          event,
          (p) => {
            off();
            handler(p);
          },
          sessionId,
        );
        return off;
      },
      detach: async () => {
        this.#listeners.delete(sessionId);
        await this.send('Target.detachFromTarget', { sessionId }).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    if (!this.#gone) {
      await this.send('Browser.close').catch(() => undefined);
      const killer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
      await this.#exited;
      clearTimeout(killer);
    }
  }
}
