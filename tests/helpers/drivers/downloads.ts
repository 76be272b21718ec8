// Downloads as the browser itself writes them into a directory (Firefox through its prefs, WebKitGTK
// through the XDG download directory): the page's streamed download (a service worker's response)
// can only be caught this way, and the file on disk is what a person would find. One download at a
// time per directory, so a new file is surely the one the trigger started.
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaughtDownload, PendingDownload } from './types.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A file whose size did not change for this long is no longer being written. */
const SETTLED_MS = 1000;

export interface DirectoryLayout {
  /** The browser's name for the file while it is written, if it uses one (Firefox: `<random>.part`). */
  isPartial(name: string): boolean;
}

export class DownloadDirectory {
  #busy: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    /** Where finished downloads are moved (so a later download of the same name gets the same name). */
    readonly outDir: string,
    readonly layout: DirectoryLayout,
    readonly engine: string,
  ) {}

  async #fresh(before: Set<string>): Promise<{ final: string[]; partial: string[] }> {
    const names = (await readdir(this.dir)).filter((n) => !before.has(n));
    return { final: names.filter((n) => !this.layout.isPartial(n)), partial: names.filter((n) => this.layout.isPartial(n)) };
  }

  async #sizes(names: string[]): Promise<string> {
    const sizes = await Promise.all(
      names.map((n) =>
        stat(join(this.dir, n)).then(
          (s) => `${n}:${s.size}`,
          () => `${n}:gone`,
        ),
      ),
    );
    return sizes.sort().join(' ');
  }

  /**
   * Run `trigger`; resolves once the browser has created the download's file (it may still be
   * written). The directory is this download's until it finished or failed.
   */
  async start(trigger: () => Promise<void>, timeoutMs: number): Promise<PendingDownload>;
  /** As above, but resolves `undefined` if `elsewhere()` says the download was caught another way first. */
  async start(trigger: () => Promise<void>, timeoutMs: number, elsewhere: () => Promise<boolean>): Promise<PendingDownload | undefined>;
  async start(trigger: () => Promise<void>, timeoutMs: number, elsewhere?: () => Promise<boolean>): Promise<PendingDownload | undefined> {
    const previous = this.#busy;
    let release!: () => void;
    this.#busy = new Promise<void>((r) => (release = r));
    await previous.catch(() => undefined);
    let released = false;
    const done = () => {
      if (!released) release();
      released = true;
    };
    try {
      const before = new Set(await readdir(this.dir));
      await trigger();
      const deadline = Date.now() + timeoutMs;
      let name: string | undefined;
      while (!name) {
        const { final } = await this.#fresh(before);
        if (final.length > 1) throw new Error(`${this.engine}: several new downloads at once: ${final.join(', ')}`);
        name = final[0];
        if (name) break;
        if (elsewhere && (await elsewhere())) {
          done();
          return undefined;
        }
        if (Date.now() > deadline) throw new Error(`${this.engine}: no download appeared in ${this.dir} within ${timeoutMs} ms`);
        await sleep(50);
      }
      let fileName = name;
      return {
        name: fileName,
        finished: async (waitMs = 60_000) => {
          try {
            const until = Date.now() + waitMs;
            let last = '';
            let since = Date.now();
            /** When the file was first seen missing (a rename in progress, or the browser gave up). */
            let missingSince: number | undefined;
            for (;;) {
              const { final, partial } = await this.#fresh(before);
              if (!final.includes(fileName)) {
                // Firefox now and then saves a Blob download under a random name first and renames
                // it to its own name: the one new file left is that download.
                const others = final.filter((n) => n !== fileName);
                if (others.length === 1) {
                  fileName = others[0]!;
                  missingSince = undefined;
                  continue;
                }
                missingSince ??= Date.now();
                if (Date.now() - missingSince > 2 * SETTLED_MS)
                  throw new Error(`${this.engine}: the download ${fileName} vanished (the browser gave up on it)`);
                await sleep(100);
                continue;
              }
              missingSince = undefined;
              const now = await this.#sizes([...final, ...partial]);
              if (now !== last) {
                last = now;
                since = Date.now();
              } else if (partial.length === 0 && Date.now() - since >= SETTLED_MS) break;
              if (Date.now() > until) throw new Error(`${this.engine}: ${fileName} still being written after ${waitMs} ms (${now})`);
              await sleep(100);
            }
            const path = join(this.outDir, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}-${fileName}`);
            await rename(join(this.dir, fileName), path);
            return { name: fileName, path } satisfies CaughtDownload;
          } finally {
            done();
          }
        },
        failed: async (waitMs = 30_000) => {
          try {
            // The browser stops writing; what it leaves behind differs (Firefox keeps its `.part`
            // and an empty file under the final name, WebKitGTK the bytes it got, under the final name).
            const until = Date.now() + waitMs;
            let last = '';
            let since = Date.now();
            for (;;) {
              const { final, partial } = await this.#fresh(before);
              const now = await this.#sizes([...final, ...partial]);
              if (now !== last) {
                last = now;
                since = Date.now();
              } else if (Date.now() - since >= SETTLED_MS) {
                const left = final.includes(fileName) ? (await stat(join(this.dir, fileName))).size : 0;
                const path = join(this.outDir, `${Date.now()}-failed-${fileName}`);
                if (final.includes(fileName)) await rename(join(this.dir, fileName), path);
                for (const p of partial) await rm(join(this.dir, p), { force: true });
                return { leftBytes: left, ...(final.includes(fileName) ? { leftPath: path } : {}), partial: partial.length > 0 };
              }
              if (Date.now() > until) throw new Error(`${this.engine}: ${fileName} still being written after ${waitMs} ms (${now})`);
              await sleep(100);
            }
          } finally {
            done();
          }
        },
        release: done,
      };
    } catch (err) {
      done();
      throw err;
    }
  }
}
