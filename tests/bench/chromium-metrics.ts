// JS heap of the page and of its workers (nested ones included), read over the Chrome DevTools Protocol while a pull
// runs, and the memory of Chromium's whole process tree from /proc.
// The probe has a session of its own on the page (bare CDP for pulls, cdp.ts; a Playwright CDP
// session for the listing bench); its workers are reached the older way: the page session
// auto-attaches to its workers without flattening and talks to them through
// Target.sendMessageToTarget (CDP "Target" domain).
import type { CdpLike } from './cdp.ts';
import { readFileSync } from 'node:fs';
import { chromiumProcesses, rssBytes, treeMemory, type TreeMemory } from './proc.ts';

export interface HeapReading {
  /** V8 heap in use on the page's main thread. */
  page: number | undefined;
  /** Summed over the page's dedicated workers and the workers they start (the pull worker and its layer workers); undefined when none answered. */
  workers: number | undefined;
  /** ArrayBuffer backing stores and external strings (outside the V8 heap): where streamed bytes live. */
  pageBuffers: number | undefined;
  workerBuffers: number | undefined;
  /** workerBuffers by the worker's script: `pull` (worker), `layer` (layer-worker), or its file name. */
  buffersByWorker: Record<string, number>;
  workerCount: number;
}

interface HeapUsage {
  usedSize?: number;
  backingStorageSize?: number;
}

interface CdpReply {
  id: number;
  result?: HeapUsage;
  error?: { message: string };
}

/** Per-request deadline: a worker deep in a synchronous step answers late; skip that sample. */
const REPLY_TIMEOUT_MS = 1_000;

export class HeapProbe {
  readonly #cdp: CdpLike;
  /** Every worker reached, as the chain of session ids from the page down (nested workers: the layer workers of the pull worker). */
  readonly #workers = new Map<string, string[]>();
  /** What each worker runs (see buffersByWorker), by session id. */
  readonly #kinds = new Map<string, string>();
  readonly #pending = new Map<number, (reply: CdpReply | undefined) => void>();
  /** Id of a wrapping sendMessageToTarget → id of the message it carries. */
  readonly #wrappers = new Map<number, number>();
  #nextId = 1;

  private constructor(cdp: CdpLike) {
    this.#cdp = cdp;
    cdp.on<{ sessionId: string; targetInfo: { type: string; url: string } }>('Target.attachedToTarget', (e) =>
      this.#attached([], e.sessionId, e.targetInfo.type, e.targetInfo.url),
    );
    cdp.on<{ sessionId: string }>('Target.detachedFromTarget', (e) => this.#detached(e.sessionId));
    cdp.on<{ sessionId: string; message: string }>('Target.receivedMessageFromTarget', (e) => this.#received([e.sessionId], e.message));
  }

  /** A worker attached below `parent`: keep it, and ask it to attach its own workers too. */
  #attached(parent: string[], sessionId: string, type: string, url = ''): void {
    if (type !== 'worker') return;
    const path = [...parent, sessionId];
    this.#workers.set(sessionId, path);
    const file = url.split('?')[0]!.split('/').pop() ?? '';
    this.#kinds.set(
      sessionId,
      /^layer-worker/.test(file) ? 'layer' : /^worker[-.]/.test(file) ? 'pull' : file.replace(/[-.].*$/, '') || 'worker',
    );
    void this.#send(path, 'Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  }

  /** A worker went away, and with it every worker below it. */
  #detached(sessionId: string): void {
    for (const [id, path] of this.#workers)
      if (path.includes(sessionId)) {
        this.#workers.delete(id);
        this.#kinds.delete(id);
      }
  }

  /** A message from the worker at `path`: a reply, or an event of a worker nested below it. */
  #received(path: string[], message: string): void {
    const msg = JSON.parse(message) as CdpReply & {
      method?: string;
      params?: { sessionId: string; message?: string; targetInfo?: { type: string; url?: string } };
    };
    if (msg.method === 'Target.receivedMessageFromTarget' && msg.params?.message !== undefined)
      return this.#received([...path, msg.params.sessionId], msg.params.message);
    if (msg.method === 'Target.attachedToTarget' && msg.params)
      return this.#attached(path, msg.params.sessionId, msg.params.targetInfo?.type ?? '', msg.params.targetInfo?.url);
    if (msg.method === 'Target.detachedFromTarget' && msg.params) return this.#detached(msg.params.sessionId);
    // A wrapper that failed on the way (the nested session is gone): its message will never be answered.
    const inner = this.#wrappers.get(msg.id);
    if (inner !== undefined) {
      this.#wrappers.delete(msg.id);
      if (msg.error) this.#pending.get(inner)?.(undefined);
      return;
    }
    const settle = this.#pending.get(msg.id);
    if (!settle) return;
    this.#pending.delete(msg.id);
    settle(msg);
  }

  /** Attach (a session of its own on the page) before navigating, so the worker the app starts is seen from its first moment. */
  static async attach(cdp: CdpLike): Promise<HeapProbe> {
    const probe = new HeapProbe(cdp);
    await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    return probe;
  }

  /** Sends `method` to the worker at `path`, wrapped once per nesting level; resolves with its reply (or undefined after a timeout). */
  #send(path: string[], method: string, params?: Record<string, unknown>): Promise<CdpReply | undefined> {
    const id = this.#nextId++;
    let message = JSON.stringify({ id, method, ...(params ? { params } : {}) });
    const wrappers: number[] = [];
    for (let i = path.length - 1; i >= 1; i--) {
      const wrapperId = this.#nextId++;
      wrappers.push(wrapperId);
      this.#wrappers.set(wrapperId, id);
      message = JSON.stringify({ id: wrapperId, method: 'Target.sendMessageToTarget', params: { sessionId: path[i], message } });
    }
    return new Promise((resolve) => {
      const done = (reply: CdpReply | undefined) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        for (const w of wrappers) this.#wrappers.delete(w);
        resolve(reply);
      };
      const timer = setTimeout(() => done(undefined), REPLY_TIMEOUT_MS);
      this.#pending.set(id, done);
      this.#cdp.send('Target.sendMessageToTarget', { sessionId: path[0]!, message }).catch(() => done(undefined));
    });
  }

  async read(): Promise<HeapReading> {
    const pagePromise = this.#cdp.send<HeapUsage>('Runtime.getHeapUsage').then(
      (r): HeapUsage => r,
      () => undefined,
    );
    const workers = [...this.#workers.entries()];
    const answered = (await Promise.all(workers.map(([, path]) => this.#send(path, 'Runtime.getHeapUsage')))).map((r) => r?.result);
    const replies = answered.filter((r): r is HeapUsage => r !== undefined);
    const buffersByWorker: Record<string, number> = {};
    answered.forEach((r, i) => {
      const kind = this.#kinds.get(workers[i]![0]) ?? 'worker';
      if (r?.backingStorageSize !== undefined) buffersByWorker[kind] = (buffersByWorker[kind] ?? 0) + r.backingStorageSize;
    });
    const sum = (pick: (u: HeapUsage) => number | undefined): number | undefined => {
      const values = replies.map(pick).filter((n): n is number => typeof n === 'number');
      return values.length > 0 ? values.reduce((a, b) => a + b, 0) : undefined;
    };
    const page = await pagePromise;
    return {
      page: page?.usedSize,
      workers: sum((u) => u.usedSize),
      pageBuffers: page?.backingStorageSize,
      workerBuffers: sum((u) => u.backingStorageSize),
      buffersByWorker,
      workerCount: this.#workers.size,
    };
  }

  async detach(): Promise<void> {
    for (const settle of this.#pending.values()) settle(undefined);
    this.#pending.clear();
    await this.#cdp.detach().catch(() => undefined);
  }
}

/**
 * RSS (and, when asked, PSS) summed over every Chromium process this node process started.
 * PSS comes from smaps_rollup, which walks every page of every process: ~30 ms of CPU per
 * reading of an idle browser, more during a pull, so samplers ask for it less often than RSS.
 */
export function chromiumMemory(options: { pss?: boolean } = {}): TreeMemory {
  return treeMemory(chromiumProcesses(), options);
}

/** Chromium's process kinds, from `--type=` on the command line (none: the browser process). */
export type ChromiumKind = 'browser' | 'renderer' | 'gpu' | 'utility' | 'other';

function chromiumKind(pid: number): ChromiumKind {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return 'other';
  }
  // Chromium rewrites its children's titles: arguments separated by spaces, not NULs.
  const type = /(?:^|[\0 ])--type=([^\0 ]+)/.exec(cmdline)?.[1];
  if (type === undefined) return 'browser';
  if (type === 'renderer') return 'renderer';
  if (type === 'gpu-process') return 'gpu';
  if (type === 'utility') return 'utility';
  return 'other';
}

/** RSS summed per process kind (where a pull's growth lives: the renderer's buffers, the browser's Blob data). */
export function chromiumRssByKind(): Record<ChromiumKind, number> {
  const out: Record<ChromiumKind, number> = { browser: 0, renderer: 0, gpu: 0, utility: 0, other: 0 };
  for (const pid of chromiumProcesses()) out[chromiumKind(pid)] += rssBytes(pid) ?? 0;
  return out;
}
