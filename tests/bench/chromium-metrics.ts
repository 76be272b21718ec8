// JS heap of the page and of its pull worker, read over the Chrome DevTools Protocol while a pull
// runs, and the memory of Chromium's whole process tree from /proc.
// Playwright gives CDP sessions for pages only, so the worker is reached the older way: the page
// session auto-attaches to its workers without flattening and talks to them through
// Target.sendMessageToTarget (CDP "Target" domain).
import type { CDPSession, Page } from 'playwright-core';
import { chromiumProcesses, treeMemory, type TreeMemory } from './proc.ts';

export interface HeapReading {
  /** V8 heap in use on the page's main thread. */
  page: number | undefined;
  /** Summed over the page's dedicated workers (the pull worker); undefined when none answered. */
  workers: number | undefined;
  /** ArrayBuffer backing stores and external strings (outside the V8 heap): where streamed bytes live. */
  pageBuffers: number | undefined;
  workerBuffers: number | undefined;
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
  readonly #cdp: CDPSession;
  readonly #workers = new Set<string>();
  readonly #pending = new Map<number, (reply: CdpReply | undefined) => void>();
  #nextId = 1;

  private constructor(cdp: CDPSession) {
    this.#cdp = cdp;
    cdp.on('Target.attachedToTarget', (e) => {
      if (e.targetInfo.type === 'worker') this.#workers.add(e.sessionId);
    });
    cdp.on('Target.detachedFromTarget', (e) => {
      this.#workers.delete(e.sessionId);
    });
    cdp.on('Target.receivedMessageFromTarget', (e) => {
      const reply = JSON.parse(e.message) as CdpReply;
      const settle = this.#pending.get(reply.id);
      if (!settle) return;
      this.#pending.delete(reply.id);
      settle(reply);
    });
  }

  /** Attach before navigating, so the worker the app starts is seen from its first moment. */
  static async attach(page: Page): Promise<HeapProbe> {
    const cdp = await page.context().newCDPSession(page);
    const probe = new HeapProbe(cdp);
    await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    return probe;
  }

  #askWorker(sessionId: string, method: string): Promise<CdpReply | undefined> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.#cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method }) }).catch(() => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(undefined);
      });
    });
  }

  async read(): Promise<HeapReading> {
    const pagePromise = this.#cdp.send('Runtime.getHeapUsage').then((r): HeapUsage => r, () => undefined);
    const replies = (await Promise.all([...this.#workers].map((s) => this.#askWorker(s, 'Runtime.getHeapUsage')))).map((r) => r?.result).filter((r): r is HeapUsage => r !== undefined);
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
