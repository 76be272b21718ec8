// Saving while pulling, in Chromium, Firefox and WebKit (tests/helpers/e2e.ts) through the real
// proxy and registries: the service worker's streamed download (the save path Firefox and Safari
// use, caught as the browser writes it while the pull still runs); in Chromium also the File System
// Access path with showSaveFilePicker answered by a file in the origin private file system (so the
// writing path is the real FileSystemWritableFileStream) and the OCI layout folder the same way; a
// corrupted layer leaves no final file on any path; layers finishing out of order; every format; the
// keep-a-copy switch; a reload mid-pull, then Resume. Files are judged by skopeo, umoci and GNU tar.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { forEachEngine, type E2EPage, type EngineHandle, type EngineName } from '../helpers/e2e.ts';
import { SEL, waitFailed, waitPulled } from '../helpers/app-page.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { validateFixtureArchive } from '../helpers/validate.ts';
import { runText } from '../helpers/command.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
let relay: Relay;
let tamper: TamperProxy;

interface Relay {
  host: string;
  /** Blob GETs seen, in order: when each began and ended on one counter of events (endedSeq 0: not yet). */
  log: { digest: string; ended: boolean; startSeq: number; endedSeq: number; range: string | undefined }[];
  /** Bytes per second for blob bodies (0: unlimited). */
  rate: number;
  /** This blob's response waits until the blobs `holdUntil` have been served. */
  holdLast: string | undefined;
  holdUntil: string[];
  /**
   * Once: responses for the blobs `barrierOf` wait until this many of them are asked and open at once
   * (at most 30 s), then all go (0: off). Requests a page makes together then overlap whatever the
   * machine's load; other blobs (a config fetched beside the layers) neither wait nor count.
   */
  barrier: number;
  barrierOf: Set<string>;
  close(): Promise<void>;
}

/** A relay in front of the anonymous registry: logs blob GETs, optionally drips bodies or holds one blob back. */
async function startRelay(target: string): Promise<Relay> {
  const upstream = new URL(target);
  const state: Relay = {
    host: '',
    log: [],
    rate: 0,
    holdLast: undefined,
    holdUntil: [],
    barrier: 0,
    barrierOf: new Set(),
    close: async () => undefined,
  };
  let events = 0;
  const blobOf = (url: string) => /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url)?.[1];
  const othersEnded = () => state.holdUntil.every((d) => state.log.some((r) => r.digest === d && r.ended));
  const server: Server = createServer((req, res) => {
    const digest = req.method === 'GET' ? blobOf(req.url ?? '') : undefined;
    const record = digest ? { digest, ended: false, startSeq: ++events, endedSeq: 0, range: req.headers.range } : undefined;
    if (record) state.log.push(record);
    const forward = () => {
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
        },
        (upRes: IncomingMessage) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          res.on('close', () => {
            if (!record) return;
            record.ended = true;
            record.endedSeq = ++events;
          });
          if (!record || state.rate === 0) return void upRes.pipe(res);
          upRes.on('data', (chunk: Buffer) => {
            upRes.pause();
            res.write(chunk, () => setTimeout(() => upRes.resume(), state.rate ? (chunk.length / state.rate) * 1000 : 0));
          });
          upRes.on('end', () => res.end());
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (record && digest === state.holdLast) {
      // Wait on a condition (the others have ended), not on a clock.
      const poll = () => (othersEnded() ? forward() : setTimeout(poll, 20));
      poll();
    } else if (record && state.barrier > 1 && state.barrierOf.has(record.digest)) {
      const since = Date.now();
      const open = () => state.log.filter((r) => !r.ended && state.barrierOf.has(r.digest)).length;
      const poll = () => {
        if (state.barrier > 1 && open() < state.barrier && Date.now() - since < 30_000) return void setTimeout(poll, 10);
        state.barrier = 0;
        forward();
      };
      poll();
    } else forward();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

beforeAll(async () => {
  relay = await startRelay(env.anon.url);
  tamper = await startTamperProxy(env.anon.url);
  server = await startAppServer([env.anon.host, relay.host, tamper.host]);
});

afterAll(async () => {
  await server?.close();
  await relay?.close();
  await tamper?.close();
});

/**
 * Which engines have File System Access (showSaveFilePicker / showDirectoryPicker): only there can
 * the pickers be answered with the origin private file system, so the `file` and `folder` tests run
 * in Chromium only. The first test checks this table against the browser itself, and checks that
 * the others offer the streamed download instead.
 */
const FILE_SYSTEM_ACCESS: Record<EngineName, boolean> = { chromium: true, firefox: false, webkit: false };

/** The pickers answer with the origin private file system: a file by the suggested name, a folder "layout". */
const OPFS_PICKERS = `(() => {
  window.showSaveFilePicker = async (o) => (await navigator.storage.getDirectory()).getFileHandle((o && o.suggestedName) || 'archive.tar', { create: true });
  window.showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('layout', { create: true });
})();`;

/**
 * A fresh profile; with `opfs` (Chromium), the pickers answer with the origin private file system;
 * `followFrom`: the smallest blob a picked file writes while it downloads (?followFrom, FOLLOW_FROM_BYTES).
 */
async function openApp(engine: EngineHandle, options: { opfs?: boolean; followFrom?: number; query?: string } = {}): Promise<E2EPage> {
  const query = [options.followFrom === undefined ? '' : `followFrom=${options.followFrom}`, options.query ?? ''].filter(Boolean).join('&');
  const url = query ? `${server.url}/?${query}` : server.url;
  const page = await engine.open(url, options.opfs ? { initScript: OPFS_PICKERS } : {});
  await page.waitFor(SEL.name);
  return page;
}

type SaveKind = 'file' | 'stream' | 'blob' | 'folder';

/** Bytes a picked file holds beyond all but one blob of `size` (its part written so far), or -1 before the total is known. */
async function writtenBeyond(page: E2EPage, size: number): Promise<number> {
  const written = Number(await page.attr(SEL.saveProgress, 'data-written'));
  const total = Number(await page.attr(SEL.saveProgress, 'data-total'));
  return total > 0 ? written - (total - size) : -1;
}

async function fillPull(page: E2EPage, name: string, options: { save: SaveKind; format?: string; keepCopy?: boolean }): Promise<void> {
  await page.fill(SEL.name, name);
  if (options.format) await page.select(SEL.format, options.format);
  await page.select(SEL.saveTo, options.save);
  if (options.keepCopy === false) await page.setChecked(SEL.keepCopy, false);
}

async function startPull(page: E2EPage, name: string, options: { save: SaveKind; format?: string; keepCopy?: boolean }): Promise<void> {
  await fillPull(page, name, options);
  await page.click(SEL.pull);
}

/** Start a pull that saves by the service worker's download; returns the download once the browser writes it. */
async function startStreamedPull(page: E2EPage, name: string, options: { format?: string; keepCopy?: boolean } = {}) {
  await fillPull(page, name, { save: 'stream', ...options });
  return page.startDownloadBy(SEL.pull, 60_000);
}

const waitSaved = (page: E2EPage) => waitPulled(page, SEL.saved);

/**
 * Firefox reports the hidden frame's navigation failing when the page errors a streamed download
 * on purpose (a corrupted layer, a reload): that is the browser marking the download failed.
 */
function allowFailedDownload(page: E2EPage): void {
  page.allowError(/A ServiceWorker intercepted the request and encountered an unexpected error/);
}

/** Whether this page's workers stage layers in OPFS (the capabilities list, once it is known). */
async function stagedInOpfs(page: E2EPage): Promise<boolean> {
  await page.waitFor(SEL.capability('staging'));
  return (await page.attr(SEL.capability('staging'), 'data-ok')) === 'true';
}

/**
 * Every file under the origin private file system's root (or `sub`), path → bytes. The pull's
 * staging files may still be going away (the sweep after a pull): one that vanished between the
 * listing and its read is left out.
 */
async function opfsFiles(page: E2EPage, sub?: string): Promise<Map<string, Buffer>> {
  const files = await page.evaluate(async (subdir: string | null) => {
    let root = await navigator.storage.getDirectory();
    if (subdir) root = await root.getDirectoryHandle(subdir);
    const out: [string, string][] = [];
    const walk = async (d: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [name, h] of (d as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        if (h.kind === 'directory') await walk(h as FileSystemDirectoryHandle, `${prefix}${name}/`);
        else {
          let bytes: Uint8Array;
          try {
            bytes = new Uint8Array(await (await (h as FileSystemFileHandle).getFile()).arrayBuffer());
          } catch (err) {
            // Removed after the listing (getFile), or while read (a File whose file went).
            if (['NotFoundError', 'NotReadableError'].includes((err as DOMException).name)) continue;
            throw err;
          }
          let bin = '';
          for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          out.push([`${prefix}${name}`, btoa(bin)]);
        }
      }
    };
    await walk(root, '');
    return out;
  }, sub ?? null);
  return new Map(files.map(([p, b]) => [p, Buffer.from(b, 'base64')]));
}

/** Names of the files the store stages in OPFS (`longshore-inflight/longshore/`), listed only. */
function stagedNames(page: E2EPage): Promise<string[]> {
  return page.evaluate(async () => {
    try {
      const root = await navigator.storage.getDirectory();
      const dir = await (await root.getDirectoryHandle('longshore-inflight')).getDirectoryHandle('longshore');
      const out: string[] = [];
      for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) out.push(name);
      return out;
    } catch {
      return [];
    }
  });
}

async function copyOut(engine: EngineHandle, page: E2EPage, name: string): Promise<string> {
  const files = await opfsFiles(page);
  const bytes = files.get(name);
  if (!bytes) throw new Error(`${name} is not in the origin private file system (has ${[...files.keys()].join(', ')})`);
  const path = join(engine.dir, `${Date.now()}-${name}`);
  await writeFile(path, bytes);
  return path;
}

function cacheKeys(page: E2EPage): Promise<string[]> {
  return page.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const open = indexedDB.open('longshore');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          if (!open.result.objectStoreNames.contains('blobs')) return resolve([]);
          const req = open.result.transaction('blobs', 'readonly').objectStore('blobs').getAllKeys();
          req.onsuccess = () => resolve(req.result.map(String));
          req.onerror = () => reject(req.error);
        };
      }),
  );
}

const port = (host: string) => host.split(':')[1];
const layersOf = (raw: string) => (JSON.parse(raw) as { layers: { digest: string; size: number }[] }).layers;
const fileOf = (host: string, repo: string) => `127.0.0.1_${port(host)}_test_${repo}_latest.tar`;

const validateV2s2 = (file: string, repoTag: string) => validateFixtureArchive(env, 'v2s2', file, repoTag);

forEachEngine((engine) => {
  const fsa = FILE_SYSTEM_ACCESS[engine.name];

  /** Pull with this engine's streamed save; the finished archive's path. */
  async function pullStreamedFile(
    page: E2EPage,
    name: string,
    file: string,
    options: { keepCopy?: boolean; format?: string } = {},
  ): Promise<string> {
    if (fsa) {
      await startPull(page, name, { save: 'file', ...options });
      await waitSaved(page);
      return copyOut(engine, page, file);
    }
    const download = await startStreamedPull(page, name, options);
    expect(download.name).toBe(file);
    const { path } = await download.finished();
    await waitSaved(page);
    return path;
  }

  describe('saving while pulling', () => {
    it('offers the save paths this browser has: a picked file and folder with File System Access, else the service worker download, and says it saves while pulling', async () => {
      // No init script here: the browser's own pickers, or none.
      const page = await openApp(engine);
      const pickers = await page.evaluate(() => [
        typeof (window as unknown as Record<string, unknown>)['showSaveFilePicker'],
        typeof (window as unknown as Record<string, unknown>)['showDirectoryPicker'],
      ]);
      expect(pickers.every((t) => t === 'function')).toBe(fsa);
      const offered = await page.evaluate(() =>
        Array.from(document.querySelectorAll('#save-to option'), (o) => (o as HTMLOptionElement).value),
      );
      expect(offered).toEqual(fsa ? ['file', 'stream', 'blob', 'folder'] : ['stream', 'blob']);
      // The default streams (the picked file, or the service worker's download).
      expect(await page.attr(SEL.saveHelp, 'data-streams')).toBe('true');
      expect(await page.text(SEL.saveHelp)).toMatch(/Saves while pulling/);
      await page.click('[data-testid="browser-support"] summary');
      await page.waitFor(SEL.capability('save'));
      const save = (await page.text(SEL.capability('save')))!.replace(/\s+/g, ' ');
      expect(await page.attr(SEL.capability('save'), 'data-ok')).toBe('true');
      expect(save).toMatch(/save(s)? while pulling/i);
      expect(save).toMatch(fsa ? /File System Access/ : /service worker/);
      await page.select(SEL.saveTo, 'blob');
      expect(await page.attr(SEL.saveHelp, 'data-streams')).toBe('false');
      expect(await page.text(SEL.saveHelp)).toMatch(/Saves when the pull ends/);
    });

    it('service worker: the download starts while the pull runs, streams the planned size, and skopeo + GNU tar accept the file', async () => {
      const page = await openApp(engine);
      relay.rate = 512 * 1024;
      try {
        const name = `${relay.host}/test/v2s2:latest`;
        const download = await startStreamedPull(page, name);
        // The download exists before the pull has finished: the file is being written as layers arrive.
        expect(await page.attr(SEL.status, 'data-status')).not.toBe('ready');
        expect(download.name).toBe(fileOf(relay.host, 'v2s2'));
        const { path: file } = await download.finished();
        await waitSaved(page);
        expect(await page.attr(SEL.saved, 'data-kind')).toBe('stream');
        await validateV2s2(file, name);
      } finally {
        relay.rate = 0;
      }
    });

    it('the archive is written behind the hash cursor: a layer still downloading is already partly in the download (where layers are staged in OPFS)', async () => {
      const page = await openApp(engine);
      // The biggest layer (263 KB) takes seconds at this rate: long enough to look while it runs.
      relay.rate = 64 * 1024;
      try {
        const name = `${relay.host}/test/v2s2:latest`;
        const download = await startStreamedPull(page, name);
        const staged = await stagedInOpfs(page);
        const unit: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6 };
        /** The most bytes written to the download while some layer was still downloading. */
        let writtenMidLayer = 0;
        for (;;) {
          const look = await page.evaluate(() => ({
            status: document.querySelector('[data-testid="status"]')?.getAttribute('data-status'),
            downloading: document.querySelectorAll('tr[data-state="downloading"]').length,
            written: document.querySelector('[data-testid="save-progress"]')?.textContent ?? '',
          }));
          const m = /:\s*([\d.]+)\s*(B|KB|MB)/.exec(look.written);
          if (look.downloading > 0 && m) writtenMidLayer = Math.max(writtenMidLayer, Number(m[1]) * unit[m[2]!]!);
          if (!['resolving', 'downloading', 'assembling'].includes(look.status ?? '')) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        // Manifests, configs, headers and the two small layers are ~3 KB: more than 100 KB written
        // while a layer downloads is that layer's own bytes. Without OPFS staging (WebKit here) a
        // layer goes to the file once verified, so less.
        if (staged) expect(writtenMidLayer).toBeGreaterThan(100_000);
        else expect(writtenMidLayer).toBeLessThan(100_000);
        const { path: file } = await download.finished();
        await waitSaved(page);
        await validateV2s2(file, name);
      } finally {
        relay.rate = 0;
      }
    });

    it('service worker, legacy: no Content-Length up front (sizes known only once layers are unpacked), the download still completes and loads', async () => {
      const page = await openApp(engine);
      const name = `${env.anon.host}/test/v2s2:latest`;
      const download = await startStreamedPull(page, name, { format: 'legacy' });
      const { path: file } = await download.finished();
      await waitSaved(page);
      await validateV2s2(file, name);
    });

    it('keep a copy off with the streamed download: blobs handed to the service worker stay readable after their cache entry went', async () => {
      const page = await openApp(engine);
      const name = `${env.anon.host}/test/oci:latest`;
      const download = await startStreamedPull(page, name, { keepCopy: false });
      const { path: file } = await download.finished();
      await waitSaved(page);
      expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
        env.fixtures.oci.manifest.raw,
      );
      await validateFixtureArchive(env, 'oci', file, name);
      expect(await cacheKeys(page)).toEqual([]);
    });

    it("keep a copy off: a blob's staged file goes as soon as the file or download has it, while the pull still runs (not when it ends)", async () => {
      const f = env.fixtures.v2s2;
      const digests = [
        ...layersOf(f.manifest.raw).map((l) => l.digest),
        (JSON.parse(f.manifest.raw) as { config: { digest: string } }).config.digest,
      ];
      // The docker format writes blobs/sha256/* sorted by digest: hold the last layer in that order,
      // so every blob before it is written while the pull waits for it.
      const held = layersOf(f.manifest.raw)
        .map((l) => l.digest)
        .sort()
        .at(-1)!;
      const before = digests.filter((d) => d < held);
      expect(before.length).toBeGreaterThan(1);
      for (const save of fsa ? (['file', 'stream'] as const) : (['stream'] as const)) {
        const page = await openApp(engine, { opfs: fsa });
        const staged = await stagedInOpfs(page);
        const name = `${relay.host}/test/v2s2:latest`;
        relay.holdLast = held;
        relay.holdUntil = ['held by the test'];
        try {
          const download = save === 'stream' ? await startStreamedPull(page, name, { keepCopy: false }) : undefined;
          if (save === 'file') await startPull(page, name, { save, keepCopy: false });
          // The others are fetched; the archive is written up to the held blob.
          const owners = async () => (await stagedNames(page)).map((n) => decodeURIComponent(n.slice(0, n.lastIndexOf('~'))));
          const early = async () => (await owners()).filter((k) => before.includes(k));
          await expect
            .poll(() => relay.log.filter((r) => r.ended && before.includes(r.digest)).length, { timeout: 30_000 })
            .toBeGreaterThan(0);
          await expect
            .poll(async () => Number(await page.attr(SEL.saveProgress, 'data-written')), { timeout: 30_000 })
            .toBeGreaterThan(
              layersOf(f.manifest.raw)
                .filter((l) => before.includes(l.digest))
                .reduce((n, l) => n + l.size, 0),
            );
          // Nothing of the blobs already in the file is left staged, though the pull still runs.
          if (staged) await expect.poll(early, { timeout: 20_000 }).toEqual([]);
          expect(await page.attr(SEL.saveProgress, 'data-written')).not.toBe(await page.attr(SEL.saveProgress, 'data-total'));
          relay.holdUntil = [];
          const file = download ? (await download.finished()).path : undefined;
          await waitSaved(page);
          await validateV2s2(file ?? (await copyOut(engine, page, fileOf(relay.host, 'v2s2'))), name);
          expect(await cacheKeys(page)).toEqual([]);
        } finally {
          relay.holdLast = undefined;
          relay.holdUntil = [];
        }
      }
    });

    it('layers finishing out of order wait for their turn: the archive-first layer arrives last and the file is still right', async () => {
      const page = await openApp(engine, { opfs: fsa });
      const f = env.fixtures.v2s2;
      // The docker format writes blobs/sha256/* sorted by digest: the smallest digest is needed first.
      const first = layersOf(f.manifest.raw)
        .map((l) => l.digest)
        .sort()[0]!;
      relay.holdLast = first;
      relay.holdUntil = layersOf(f.manifest.raw)
        .map((l) => l.digest)
        .filter((d) => d !== first);
      relay.log.length = 0;
      try {
        const name = `${relay.host}/test/v2s2:latest`;
        const file = await pullStreamedFile(page, name, fileOf(relay.host, 'v2s2'));
        const gets = relay.log.filter((r) => layersOf(f.manifest.raw).some((l) => l.digest === r.digest));
        // Needed first by the archive, finished last (every layer is requested at once, so which request
        // reaches the relay first is a race; their ends are not).
        expect(gets.map((r) => r.digest)).toContain(first);
        expect(gets.reduce((a, b) => (b.endedSeq > a.endedSeq ? b : a)).digest).toBe(first);
        await validateV2s2(file, name);
      } finally {
        relay.holdLast = undefined;
        relay.holdUntil = [];
      }
    });

    it('legacy: layers to unpack are fetched one per layer worker at a time, and the file is right', async () => {
      const page = await openApp(engine, { opfs: fsa });
      const f = env.fixtures.many;
      const layers = new Set(layersOf(f.manifest.raw).map((l) => l.digest));
      // The page starts one layer worker per core, at most 6 (layer-pool.ts).
      const workers = await page.evaluate(() => Math.max(1, Math.min(navigator.hardwareConcurrency || 2, 6)));
      relay.log.length = 0;
      // Each (tiny) layer's response lasts a few hundred milliseconds, so the ones fetched together
      // overlap; the first layers wait until as many as there are workers are asked (a worker slow to
      // start on a loaded machine made them one at a time: in Chromium once, in Firefox ESR on CI once
      // while the wait was 5 s and any blob's request, the config's too, counted).
      relay.rate = 1024;
      relay.barrier = workers;
      relay.barrierOf = layers;
      try {
        const name = `${relay.host}/test/many:latest`;
        const file = await pullStreamedFile(page, name, fileOf(relay.host, 'many'), { format: 'legacy' });
        await validateFixtureArchive(env, 'many', file, name);
      } finally {
        relay.rate = 0;
        relay.barrier = 0;
        relay.barrierOf = new Set();
      }
      const gets = relay.log.filter((r) => layers.has(r.digest));
      expect(gets.length).toBe(layers.size);
      const most = Math.max(...gets.map((g) => gets.filter((o) => o.startSeq <= g.startSeq && o.endedSeq > g.startSeq).length));
      // No more at once than there are workers (before: 6, the other formats' number); and the
      // responses did overlap, so the count means something.
      expect(most).toBeLessThanOrEqual(workers);
      if (workers > 1) expect(most).toBeGreaterThan(1);
    });

    it('a corrupted layer mid-stream: the streamed download is not completed (the browser marks it failed), and what is left is no archive', async () => {
      const largest = layersOf(env.fixtures.v2s2.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
      tamper.rules = { corruptBlob: { digest: largest.digest } };
      const page = await openApp(engine);
      allowFailedDownload(page);
      try {
        const name = `${tamper.host}/test/v2s2:latest`;
        const download = await startStreamedPull(page, name);
        await waitFailed(page, 'DIGEST_MISMATCH');
        const left = await download.failed();
        // Chromium's driver reports the browser's verdict; Firefox keeps its `.part` beside an empty
        // file, WebKitGTK the bytes it received: neither is a whole archive.
        if (engine.name === 'chromium') expect(left.failure).toBeTruthy();
        if (left.leftPath) await expect(validateV2s2(left.leftPath, name)).rejects.toThrow();
      } finally {
        tamper.rules = {};
      }
    });

    it('a layer corrupted once after part of it went into the streamed download: where layers are staged in OPFS the download fails and says why (bytes sent cannot be taken back), and Pull again completes; elsewhere the pull completes', async () => {
      const largest = layersOf(env.fixtures.v2s2.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
      tamper.rules = { corruptBlob: { digest: largest.digest, times: 1, pauseMs: 1000 } };
      const page = await openApp(engine);
      const staged = await stagedInOpfs(page);
      try {
        const name = `${tamper.host}/test/v2s2:latest`;
        if (staged) {
          allowFailedDownload(page);
          const download = await startStreamedPull(page, name);
          await waitFailed(page, 'NETWORK');
          expect(await page.text(SEL.error)).toMatch(/could not be saved as it arrived: The layer started over/);
          await download.failed();
        }
        // Pull again (or the first pull where nothing is followed): the layer is fetched whole and verified.
        const download = await startStreamedPull(page, name);
        const { path: file } = await download.finished();
        await waitSaved(page);
        await validateV2s2(file, name);
      } finally {
        tamper.rules = {};
      }
    });

    it('a reload mid-pull lists the pull as unfinished; Resume completes it without fetching stored layers again; Discard forgets one', async () => {
      // Resume is about the pull worker and the store; the save path is the one this engine streams
      // to a file the test reads back (Chromium's picked file), or the download at the end.
      const save: SaveKind = fsa ? 'file' : 'blob';
      const page = await openApp(engine, { opfs: fsa });
      const f = env.fixtures.v2s2;
      const big = layersOf(f.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
      relay.rate = 32 * 1024;
      relay.log.length = 0;
      try {
        const name = `${relay.host}/test/v2s2:latest`;
        await startPull(page, name, { save });
        // Wait until the small layers are stored and the big one is still dripping.
        await expect.poll(() => page.count('table.layers tr[data-state="done"]'), { timeout: 30_000 }).toBeGreaterThan(0);
        // Rows say done only once the layer is verified and stored.
        const doneBefore = new Set(await page.attrs('table.layers tr[data-state="done"] code', 'title'));
        expect(doneBefore.size).toBeGreaterThan(0);
        expect(doneBefore).not.toContain(big.digest);
        await page.reload();
        await page.waitFor(SEL.unfinished, { timeout: 10_000 });
        expect(await page.text(SEL.unfinished)).toContain(name);
        relay.rate = 0;
        const mark = relay.log.length;
        if (!fsa) await page.select(SEL.saveTo, 'blob');
        await page.click(`button[aria-label="Resume ${name}"]`);
        let file: string;
        if (fsa) {
          await waitSaved(page);
          file = await copyOut(engine, page, fileOf(relay.host, 'v2s2'));
        } else {
          await waitPulled(page, SEL.download);
          file = (await page.downloadBy(SEL.download)).path;
        }
        const again = relay.log.slice(mark).map((r) => r.digest);
        for (const d of doneBefore) expect(again, `layer ${d} fetched again`).not.toContain(d);
        await validateV2s2(file, name);
        await expect.poll(() => page.count(SEL.unfinished)).toBe(0);

        // A failed pull stays listed; Discard removes it. (An image not cached yet: cached layers are not fetched, so not corrupted.)
        const other = layersOf(env.fixtures.oci.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
        tamper.rules = { corruptBlob: { digest: other.digest } };
        await startPull(page, `${tamper.host}/test/oci:latest`, { save });
        await waitFailed(page, 'DIGEST_MISMATCH');
        await page.waitFor(SEL.unfinished);
        await page.click(`button[aria-label="Discard ${tamper.host}/test/oci:latest"]`);
        await expect.poll(() => page.count(SEL.unfinished)).toBe(0);
      } finally {
        relay.rate = 0;
        tamper.rules = {};
      }
    });
  });

  // File System Access: Chromium only (FILE_SYSTEM_ACCESS, checked above against the browser).
  if (fsa)
    describe('saving into a picked file or folder (File System Access)', () => {
      it('file picker: written to the picked file through FileSystemWritableFileStream; skopeo reads it', async () => {
        const page = await openApp(engine, { opfs: true });
        expect(await page.attr(SEL.saveHelp, 'data-streams')).toBe('true');
        const name = `${env.anon.host}/test/oci:latest`;
        await startPull(page, name, { save: 'file' });
        await waitSaved(page);
        expect(await page.attr(SEL.saved, 'data-kind')).toBe('file');
        const file = await copyOut(engine, page, fileOf(env.anon.host, 'oci'));
        expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
          env.fixtures.oci.manifest.raw,
        );
        await validateFixtureArchive(env, 'oci', file, name);
      });

      for (const format of ['legacy', 'oci', 'tarball'] as const) {
        it(`file picker, ${format} format: the file is what skopeo and GNU tar expect`, async () => {
          const page = await openApp(engine, { opfs: true });
          const name = `${env.anon.host}/test/v2s2:latest`;
          await startPull(page, name, { save: 'file', format });
          await waitSaved(page);
          const file = await copyOut(engine, page, fileOf(env.anon.host, 'v2s2'));
          const f = env.fixtures.v2s2;
          if (format === 'oci') {
            expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
              f.manifest.raw,
            );
            expect(
              await runText('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv }),
            ).toBe(f.config.raw);
          } else await validateV2s2(file, name);
          if (format === 'legacy') {
            const diffIds = (JSON.parse(f.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
            const manifest = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
            for (const [i, path] of manifest[0]!.Layers.entries()) {
              const hash = (await runText('sh', ['-c', 'tar -xOf "$1" "$2" | sha256sum', 'sh', file, path])).split(' ')[0];
              expect(`sha256:${hash}`).toBe(diffIds[i]);
            }
          }
        });
      }

      it('OCI layout folder: blobs, oci-layout and index.json that skopeo inspects and umoci unpacks', async () => {
        const page = await openApp(engine, { opfs: true });
        const name = `${env.anon.host}/test/oci:latest`;
        await startPull(page, name, { save: 'folder' });
        await waitSaved(page);
        expect(await page.attr(SEL.saved, 'data-kind')).toBe('folder');
        const files = await opfsFiles(page, 'layout');
        const layout = join(engine.dir, 'layout-oci');
        for (const [path, bytes] of files) {
          await mkdir(dirname(join(layout, path)), { recursive: true });
          await writeFile(join(layout, path), bytes);
        }
        expect(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
        const f = env.fixtures.oci;
        expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci:${layout}:latest`], { env: env.skopeoEnv })).toBe(
          f.manifest.raw,
        );
        const bundle = join(engine.dir, 'bundle-oci');
        await runText('umoci', ['unpack', '--rootless', '--image', `${layout}:latest`, bundle]);
        expect(await readFile(join(bundle, 'rootfs/app/version.txt'), 'utf8')).toMatch(/release/);
        // Exactly the image's blobs: manifest, config, layers.
        const blobs = [...files.keys()]
          .filter((p) => p.startsWith('blobs/sha256/'))
          .map((p) => `sha256:${p.slice('blobs/sha256/'.length)}`)
          .sort();
        expect(blobs).toEqual([f.manifest.digest, f.config.digest, ...layersOf(f.manifest.raw).map((l) => l.digest)].sort());
      });

      it('file picker: a layer that finishes before its turn goes straight to its place (the archive-first layer held back until everything else is in the file)', async () => {
        const page = await openApp(engine, { opfs: true });
        const f = env.fixtures.v2s2;
        const layers = layersOf(f.manifest.raw);
        // The docker format writes blobs/sha256/* sorted by digest: the smallest digest is needed first.
        const first = layers.reduce((a, b) => (b.digest < a.digest ? b : a));
        relay.holdLast = first.digest;
        // A digest never served: the held layer waits until the test lets it go.
        relay.holdUntil = [`sha256:${'0'.repeat(64)}`];
        relay.log.length = 0;
        try {
          const name = `${relay.host}/test/v2s2:latest`;
          await startPull(page, name, { save: 'file' });
          // Written in archive order, the file could not pass the held layer's start; placed, it holds
          // every byte but that layer's.
          const progress = async () => {
            const written = Number(await page.attr(SEL.saveProgress, 'data-written'));
            const total = Number(await page.attr(SEL.saveProgress, 'data-total'));
            return total > 0 ? total - first.size - written : -1;
          };
          await expect.poll(progress, { timeout: 30_000 }).toBe(0);
          expect(relay.log.find((r) => r.digest === first.digest)?.ended).toBe(false);
          relay.holdUntil = [];
          await waitSaved(page);
          await validateV2s2(await copyOut(engine, page, fileOf(relay.host, 'v2s2')), name);
        } finally {
          relay.holdLast = undefined;
          relay.holdUntil = [];
        }
      });

      it.each([
        ['by default a small layer is copied once verified: nothing of it is in the file while it downloads', undefined],
        ['with ?followFrom=0 it is written behind its hash cursor as it downloads', 0],
      ])('file picker: %s', async (_, followFrom) => {
        const f = env.fixtures.v2s2;
        const largest = layersOf(f.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
        const half = Math.floor(largest.size / 2);
        // The largest layer stops after half its bytes until the pull is cancelled.
        tamper.rules = { stallBlob: { digest: largest.digest, afterBytes: half } };
        const page = await openApp(engine, { opfs: true, ...(followFrom !== undefined ? { followFrom } : {}) });
        try {
          await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'file' });
          const beyondOthers = () => writtenBeyond(page, largest.size);
          // Everything but the stalled layer is placed; followed, its first half (what arrived) goes in too.
          if (followFrom === undefined) {
            await expect.poll(beyondOthers, { timeout: 30_000 }).toBe(0);
            // Its half arrived (the layer's row shows it) and stays out of the file: followed, it would
            // be written within the tail's 100 ms flush delay.
            const arrived = () =>
              page.evaluate((size: number) => {
                const bars = [...document.querySelectorAll<HTMLProgressElement>('table.layers progress')];
                return bars.find((b) => b.max === size)?.value ?? 0;
              }, largest.size);
            await expect.poll(arrived, { timeout: 30_000 }).toBeGreaterThanOrEqual(half);
            for (let i = 0; i < 10; i++) {
              expect(await beyondOthers()).toBe(0);
              await new Promise((r) => setTimeout(r, 100));
            }
          } else {
            await expect.poll(beyondOthers, { timeout: 30_000 }).toBe(half);
          }
          await page.click(SEL.cancel);
        } finally {
          tamper.rules = {};
        }
      });

      // Parallel ranges from 4 KiB (?rangesFrom), every blob followed (?followFrom=0): a range that
      // completes in its spill ahead of the hash cursor goes into the file as a piece, copied by the
      // browser from storage, not behind the cursor through the pull worker.
      const PIECES = 'ranges=4&rangesFrom=4096';

      it('file picker: ranges complete ahead of a stalled first range are in the file already (pieces), while the hash cursor waits', async () => {
        const f = env.fixtures.v2s2;
        const largest = layersOf(f.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
        const quarter = Math.ceil(largest.size / 4);
        const head = Math.floor(quarter / 3);
        // The first range (where the hash cursor is) stops after `head` bytes; the other three complete.
        tamper.rules = { stallBlob: { digest: largest.digest, afterBytes: head, rangeStart: 0 } };
        const page = await openApp(engine, { opfs: true, followFrom: 0, query: PIECES });
        try {
          await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'file' });
          const beyondOthers = () => writtenBeyond(page, largest.size);
          // Behind the cursor only `head` bytes could be written; the three later ranges are there too.
          await expect.poll(beyondOthers, { timeout: 30_000 }).toBe(head + largest.size - quarter);
          await page.click(SEL.cancel);
        } finally {
          tamper.rules = {};
        }
      });

      it('file picker: a pull whose big layer goes in as pieces gives a file skopeo and tar read', async () => {
        const page = await openApp(engine, { opfs: true, followFrom: 0, query: PIECES });
        const name = `${tamper.host}/test/v2s2:latest`;
        const largest = layersOf(env.fixtures.v2s2.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
        const mark = tamper.requests.length;
        await startPull(page, name, { save: 'file' });
        await waitSaved(page);
        await validateV2s2(await copyOut(engine, page, fileOf(tamper.host, 'v2s2')), name);
        // The layer came as 4 ranges.
        expect(tamper.requests.slice(mark).filter((r) => r.method === 'GET' && r.path.endsWith(largest.digest))).toHaveLength(4);
      });

      it('keep a copy off: the file is complete and the browser cache holds nothing new', async () => {
        const page = await openApp(engine, { opfs: true });
        const name = `${env.anon.host}/test/v2s2:latest`;
        await startPull(page, name, { save: 'file', keepCopy: false });
        await waitSaved(page);
        await validateV2s2(await copyOut(engine, page, fileOf(env.anon.host, 'v2s2')), name);
        expect(await cacheKeys(page)).toEqual([]);
        // Nothing to browse: the layers are not in the browser.
        expect(await page.count(SEL.browsePulled)).toBe(0);
      });

      it('a layer corrupted once, written as it arrived, is taken back: the picked file seeks to its start and writes it again, and the file is right', async () => {
        const largest = layersOf(env.fixtures.v2s2.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
        // The first body of the layer has one byte flipped in its middle and its end held back for a
        // second: every byte of it is in the file by the time its digest fails; the fetch engine
        // starts it over.
        tamper.rules = { corruptBlob: { digest: largest.digest, times: 1, pauseMs: 1000 } };
        // Every blob followed as it downloads (a picked file follows only big ones by default).
        const page = await openApp(engine, { opfs: true, followFrom: 0 });
        try {
          const name = `${tamper.host}/test/v2s2:latest`;
          const mark = tamper.requests.length;
          await startPull(page, name, { save: 'file' });
          await waitSaved(page);
          const bodies = tamper.requests.slice(mark).filter((r) => r.method === 'GET' && r.path.endsWith(largest.digest));
          expect(bodies.map((r) => r.action)).toEqual(['corrupt', 'forward']);
          await validateV2s2(await copyOut(engine, page, fileOf(tamper.host, 'v2s2')), name);
        } finally {
          tamper.rules = {};
        }
      });

      describe('a corrupted layer mid-stream leaves no final file', () => {
        const largest = () => layersOf(env.fixtures.v2s2.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));

        it('file picker: the picked file is removed', async () => {
          tamper.rules = { corruptBlob: { digest: largest().digest } };
          const page = await openApp(engine, { opfs: true });
          try {
            await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'file' });
            await waitFailed(page, 'DIGEST_MISMATCH');
            // The store's own staging directory holds unfinished downloads kept for a resume.
            expect([...(await opfsFiles(page)).keys()].filter((p) => !p.startsWith('longshore-inflight/'))).toEqual([]);
          } finally {
            tamper.rules = {};
          }
        });

        it('OCI layout folder: no index.json, no oci-layout, no blobs', async () => {
          tamper.rules = { corruptBlob: { digest: largest().digest } };
          const page = await openApp(engine, { opfs: true });
          try {
            await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'folder' });
            await waitFailed(page, 'DIGEST_MISMATCH');
            expect([...(await opfsFiles(page, 'layout')).keys()]).toEqual([]);
          } finally {
            tamper.rules = {};
          }
        });
      });
    });
});
