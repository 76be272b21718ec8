// Saving while pulling, in Debian's Chromium through the real proxy and registries: the service
// worker's streamed download (caught by Playwright's download event while the pull still runs),
// the File System Access path with showSaveFilePicker answered by a file in the origin private file
// system (so the writing path is the real FileSystemWritableFileStream), the OCI layout folder the
// same way; a corrupted layer leaves no final file on any path; layers finishing out of order;
// every format; the keep-a-copy switch; a reload mid-pull, then Resume. Files are judged by skopeo,
// umoci and GNU tar.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Browser, Download, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { validateDockerArchive } from '../helpers/validate.ts';
import { runText } from '../helpers/command.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let browser: Browser;
let server: RunningServer;
let relay: Relay;
let tamper: TamperProxy;
let dir: string;

interface Relay {
  host: string;
  /** Blob GETs seen, in order, with the order their responses ended in (0: not yet). */
  log: { digest: string; ended: boolean; endedSeq: number; range: string | undefined }[];
  /** Bytes per second for blob bodies (0: unlimited). */
  rate: number;
  /** This blob's response waits until the blobs `holdUntil` have been served. */
  holdLast: string | undefined;
  holdUntil: string[];
  close(): Promise<void>;
}

/** A relay in front of the anonymous registry: logs blob GETs, optionally drips bodies or holds one blob back. */
async function startRelay(target: string): Promise<Relay> {
  const upstream = new URL(target);
  const state: Relay = { host: '', log: [], rate: 0, holdLast: undefined, holdUntil: [], close: async () => undefined };
  let endings = 0;
  const blobOf = (url: string) => /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url)?.[1];
  const othersEnded = () => state.holdUntil.every((d) => state.log.some((r) => r.digest === d && r.ended));
  const server: Server = createServer((req, res) => {
    const digest = req.method === 'GET' ? blobOf(req.url ?? '') : undefined;
    const record = digest ? { digest, ended: false, endedSeq: 0, range: req.headers.range } : undefined;
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
            record.endedSeq = ++endings;
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
  browser = await launchChromium();
  dir = await mkdtemp(join(tmpdir(), 'longshore-save-e2e-'));
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await relay?.close();
  await tamper?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh profile; with `opfs`, the pickers answer with the origin private file system (a file by the suggested name, a folder "layout"). */
async function openApp(options: { opfs?: boolean } = {}): Promise<Page> {
  const context = await browser.newContext({ acceptDownloads: true });
  if (options.opfs) {
    await context.addInitScript(() => {
      const w = window as unknown as Record<string, unknown>;
      w['showSaveFilePicker'] = async (o?: { suggestedName?: string }) =>
        (await navigator.storage.getDirectory()).getFileHandle(o?.suggestedName ?? 'archive.tar', { create: true });
      w['showDirectoryPicker'] = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('layout', { create: true });
    });
  }
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e.message));
  await page.goto(server.url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  return page;
}

async function startPull(
  page: Page,
  name: string,
  options: { save: 'file' | 'stream' | 'blob' | 'folder'; format?: string; keepCopy?: boolean },
): Promise<void> {
  await page.getByLabel('Image', { exact: true }).fill(name);
  if (options.format) await page.getByLabel('Format').selectOption(options.format);
  await page.getByLabel('Save to').selectOption(options.save);
  if (options.keepCopy === false) await page.getByLabel('Keep a copy in this browser').uncheck();
  await page.getByRole('button', { name: 'Pull', exact: true }).click();
}

async function waitSaved(page: Page): Promise<void> {
  await Promise.race([
    page.getByTestId('saved').waitFor({ timeout: 60_000 }),
    page
      .getByTestId('error')
      .waitFor({ timeout: 60_000 })
      .then(async () => {
        throw new Error(`pull failed in the page: ${await page.getByTestId('error').textContent()}`);
      }),
  ]);
}

async function waitFailed(page: Page, code: string): Promise<void> {
  await page.getByTestId('error').waitFor({ timeout: 60_000 });
  expect(await page.getByTestId('error').getAttribute('data-code')).toBe(code);
  await expect.poll(() => page.getByRole('button', { name: 'Pull', exact: true }).isEnabled()).toBe(true);
}

/** Every file under the origin private file system's root (or `sub`), path → bytes. */
async function opfsFiles(page: Page, sub?: string): Promise<Map<string, Buffer>> {
  const files = await page.evaluate(async (subdir) => {
    let root = await navigator.storage.getDirectory();
    if (subdir) root = await root.getDirectoryHandle(subdir);
    const out: [string, string][] = [];
    const walk = async (d: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [name, h] of (d as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        if (h.kind === 'directory') await walk(h as FileSystemDirectoryHandle, `${prefix}${name}/`);
        else {
          const bytes = new Uint8Array(await (await (h as FileSystemFileHandle).getFile()).arrayBuffer());
          let bin = '';
          for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          out.push([`${prefix}${name}`, btoa(bin)]);
        }
      }
    };
    await walk(root, '');
    return out;
  }, sub);
  return new Map(files.map(([p, b]) => [p, Buffer.from(b, 'base64')]));
}

async function copyOut(page: Page, name: string): Promise<string> {
  const files = await opfsFiles(page);
  const bytes = files.get(name);
  if (!bytes) throw new Error(`${name} is not in the origin private file system (has ${[...files.keys()].join(', ')})`);
  const path = join(dir, `${Date.now()}-${name}`);
  await writeFile(path, bytes);
  return path;
}

function cacheKeys(page: Page): Promise<string[]> {
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

describe('saving while pulling', () => {
  it('service worker: the download starts while the pull runs, streams the planned size, and skopeo + GNU tar accept the file', async () => {
    const page = await openApp();
    relay.rate = 512 * 1024;
    try {
      const name = `${relay.host}/test/v2s2:latest`;
      const downloading = page.waitForEvent('download', { timeout: 60_000 });
      await startPull(page, name, { save: 'stream' });
      const download: Download = await downloading;
      // The download exists before the pull has finished: the file is being written as layers arrive.
      expect(await page.getByTestId('status').getAttribute('data-status')).not.toBe('ready');
      expect(download.suggestedFilename()).toBe(`127.0.0.1_${port(relay.host)}_test_v2s2_latest.tar`);
      const file = join(dir, 'sw-v2s2.tar');
      await download.saveAs(file);
      expect(await download.failure()).toBeNull();
      await waitSaved(page);
      expect(await page.getByTestId('saved').getAttribute('data-kind')).toBe('stream');
      const f = env.fixtures.v2s2;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
    } finally {
      relay.rate = 0;
      await page.context().close();
    }
  });

  it('service worker, legacy: no Content-Length up front (sizes known only once layers are unpacked), the download still completes and loads', async () => {
    const page = await openApp();
    try {
      const name = `${env.anon.host}/test/v2s2:latest`;
      const downloading = page.waitForEvent('download', { timeout: 60_000 });
      await startPull(page, name, { save: 'stream', format: 'legacy' });
      const download = await downloading;
      const file = join(dir, 'sw-legacy.tar');
      await download.saveAs(file);
      expect(await download.failure()).toBeNull();
      await waitSaved(page);
      const f = env.fixtures.v2s2;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
    } finally {
      await page.context().close();
    }
  });

  it('file picker: written to the picked file through FileSystemWritableFileStream; skopeo reads it', async () => {
    const page = await openApp({ opfs: true });
    expect(await page.getByTestId('save-help').getAttribute('data-streams')).toBe('true');
    const name = `${env.anon.host}/test/oci:latest`;
    await startPull(page, name, { save: 'file' });
    await waitSaved(page);
    expect(await page.getByTestId('saved').getAttribute('data-kind')).toBe('file');
    const file = await copyOut(page, `127.0.0.1_${port(env.anon.host)}_test_oci_latest.tar`);
    expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
      env.fixtures.oci.manifest.raw,
    );
    await validateDockerArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      manifest: env.fixtures.oci.manifest,
      config: env.fixtures.oci.config,
      repoTag: name,
    });
    await page.context().close();
  });

  for (const format of ['legacy', 'oci', 'tarball'] as const) {
    it(`file picker, ${format} format: the file is what skopeo and GNU tar expect`, async () => {
      const page = await openApp({ opfs: true });
      const name = `${env.anon.host}/test/v2s2:latest`;
      await startPull(page, name, { save: 'file', format });
      await waitSaved(page);
      const file = await copyOut(page, `127.0.0.1_${port(env.anon.host)}_test_v2s2_latest.tar`);
      const f = env.fixtures.v2s2;
      if (format === 'oci') {
        expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
          f.manifest.raw,
        );
        expect(
          await runText('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv }),
        ).toBe(f.config.raw);
      } else {
        await validateDockerArchive({
          file,
          storageDir: env.storageDir,
          skopeoEnv: env.skopeoEnv,
          manifest: f.manifest,
          config: f.config,
          repoTag: name,
        });
      }
      if (format === 'legacy') {
        const diffIds = (JSON.parse(f.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
        const manifest = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
        for (const [i, path] of manifest[0]!.Layers.entries()) {
          const hash = (await runText('sh', ['-c', 'tar -xOf "$1" "$2" | sha256sum', 'sh', file, path])).split(' ')[0];
          expect(`sha256:${hash}`).toBe(diffIds[i]);
        }
      }
      await page.context().close();
    });
  }

  it('OCI layout folder: blobs, oci-layout and index.json that skopeo inspects and umoci unpacks', async () => {
    const page = await openApp({ opfs: true });
    const name = `${env.anon.host}/test/oci:latest`;
    await startPull(page, name, { save: 'folder' });
    await waitSaved(page);
    expect(await page.getByTestId('saved').getAttribute('data-kind')).toBe('folder');
    const files = await opfsFiles(page, 'layout');
    const layout = join(dir, 'layout-oci');
    for (const [path, bytes] of files) {
      await mkdir(dirname(join(layout, path)), { recursive: true });
      await writeFile(join(layout, path), bytes);
    }
    expect(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const f = env.fixtures.oci;
    expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci:${layout}:latest`], { env: env.skopeoEnv })).toBe(
      f.manifest.raw,
    );
    const bundle = join(dir, 'bundle-oci');
    await runText('umoci', ['unpack', '--rootless', '--image', `${layout}:latest`, bundle]);
    expect(await readFile(join(bundle, 'rootfs/app/version.txt'), 'utf8')).toMatch(/release/);
    // Exactly the image's blobs: manifest, config, layers.
    const blobs = [...files.keys()]
      .filter((p) => p.startsWith('blobs/sha256/'))
      .map((p) => `sha256:${p.slice('blobs/sha256/'.length)}`)
      .sort();
    expect(blobs).toEqual([f.manifest.digest, f.config.digest, ...layersOf(f.manifest.raw).map((l) => l.digest)].sort());
    await page.context().close();
  });

  it('layers finishing out of order wait for their turn: the archive-first layer arrives last and the file is still right', async () => {
    const page = await openApp({ opfs: true });
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
      await startPull(page, name, { save: 'file' });
      await waitSaved(page);
      const gets = relay.log.filter((r) => layersOf(f.manifest.raw).some((l) => l.digest === r.digest));
      // Needed first by the archive, finished last (every layer is requested at once, so which request
      // reaches the relay first is a race; their ends are not).
      expect(gets.map((r) => r.digest)).toContain(first);
      expect(gets.reduce((a, b) => (b.endedSeq > a.endedSeq ? b : a)).digest).toBe(first);
      const file = await copyOut(page, `127.0.0.1_${port(relay.host)}_test_v2s2_latest.tar`);
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
    } finally {
      relay.holdLast = undefined;
      relay.holdUntil = [];
      await page.context().close();
    }
  });

  it('keep a copy off: the file is complete and the browser cache holds nothing new', async () => {
    const page = await openApp({ opfs: true });
    const name = `${env.anon.host}/test/v2s2:latest`;
    await startPull(page, name, { save: 'file', keepCopy: false });
    await waitSaved(page);
    const file = await copyOut(page, `127.0.0.1_${port(env.anon.host)}_test_v2s2_latest.tar`);
    const f = env.fixtures.v2s2;
    await validateDockerArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      manifest: f.manifest,
      config: f.config,
      repoTag: name,
    });
    expect(await cacheKeys(page)).toEqual([]);
    // Nothing to browse: the layers are not in the browser.
    expect(await page.getByRole('button', { name: /Browse the files/ }).count()).toBe(0);
    await page.context().close();
  });

  it('keep a copy off with the streamed download: blobs handed to the service worker stay readable after their cache entry went', async () => {
    const page = await openApp();
    try {
      const name = `${env.anon.host}/test/oci:latest`;
      const downloading = page.waitForEvent('download', { timeout: 60_000 });
      await startPull(page, name, { save: 'stream', keepCopy: false });
      const download = await downloading;
      const file = join(dir, 'sw-nocopy.tar');
      await download.saveAs(file);
      expect(await download.failure()).toBeNull();
      await waitSaved(page);
      expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
        env.fixtures.oci.manifest.raw,
      );
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: env.fixtures.oci.manifest,
        config: env.fixtures.oci.config,
        repoTag: name,
      });
      expect(await cacheKeys(page)).toEqual([]);
    } finally {
      await page.context().close();
    }
  });

  describe('a corrupted layer mid-stream leaves no final file', () => {
    const f = () => env.fixtures.v2s2;
    const largest = () => layersOf(f().manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));

    it('file picker: the picked file is removed', async () => {
      tamper.rules = { corruptBlob: { digest: largest().digest } };
      const page = await openApp({ opfs: true });
      try {
        await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'file' });
        await waitFailed(page, 'DIGEST_MISMATCH');
        // The store's own staging directory holds unfinished downloads kept for a resume.
        expect([...(await opfsFiles(page)).keys()].filter((p) => !p.startsWith('longshore-inflight/'))).toEqual([]);
      } finally {
        tamper.rules = {};
        await page.context().close();
      }
    });

    it('streamed download: the browser marks the download failed', async () => {
      tamper.rules = { corruptBlob: { digest: largest().digest } };
      const page = await openApp();
      try {
        const downloading = page.waitForEvent('download', { timeout: 60_000 });
        await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'stream' });
        const download = await downloading;
        await waitFailed(page, 'DIGEST_MISMATCH');
        expect(await download.failure()).not.toBeNull();
      } finally {
        tamper.rules = {};
        await page.context().close();
      }
    });

    it('OCI layout folder: no index.json, no oci-layout, no blobs', async () => {
      tamper.rules = { corruptBlob: { digest: largest().digest } };
      const page = await openApp({ opfs: true });
      try {
        await startPull(page, `${tamper.host}/test/v2s2:latest`, { save: 'folder' });
        await waitFailed(page, 'DIGEST_MISMATCH');
        expect([...(await opfsFiles(page, 'layout')).keys()]).toEqual([]);
      } finally {
        tamper.rules = {};
        await page.context().close();
      }
    });
  });

  it('a reload mid-pull lists the pull as unfinished; Resume completes it without fetching stored layers again; Discard forgets one', async () => {
    const page = await openApp({ opfs: true });
    const f = env.fixtures.v2s2;
    const big = layersOf(f.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
    relay.rate = 32 * 1024;
    relay.log.length = 0;
    try {
      const name = `${relay.host}/test/v2s2:latest`;
      await startPull(page, name, { save: 'file' });
      // Wait until the small layers are stored and the big one is still dripping.
      await expect.poll(() => page.locator('table.layers tr[data-state="done"]').count(), { timeout: 30_000 }).toBeGreaterThan(0);
      // Rows say done only once the layer is verified and stored.
      const doneBefore = new Set(
        await page
          .locator('table.layers tr[data-state="done"] code')
          .evaluateAll((codes) => codes.map((c) => c.getAttribute('title') ?? '')),
      );
      expect(doneBefore.size).toBeGreaterThan(0);
      expect(doneBefore).not.toContain(big.digest);
      await page.reload();
      const entry = page.getByTestId('unfinished-entry');
      await entry.waitFor({ timeout: 10_000 });
      expect(await entry.textContent()).toContain(name);
      relay.rate = 0;
      const mark = relay.log.length;
      await page.getByRole('button', { name: `Resume ${name}` }).click();
      await waitSaved(page);
      const again = relay.log.slice(mark).map((r) => r.digest);
      for (const d of doneBefore) expect(again, `layer ${d} fetched again`).not.toContain(d);
      const file = await copyOut(page, `127.0.0.1_${port(relay.host)}_test_v2s2_latest.tar`);
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
      await expect.poll(() => page.getByTestId('unfinished-entry').count()).toBe(0);

      // A failed pull stays listed; Discard removes it. (An image not cached yet: cached layers are not fetched, so not corrupted.)
      const other = layersOf(env.fixtures.oci.manifest.raw).reduce((a, b) => (b.size > a.size ? b : a));
      tamper.rules = { corruptBlob: { digest: other.digest } };
      await startPull(page, `${tamper.host}/test/oci:latest`, { save: 'file' });
      await waitFailed(page, 'DIGEST_MISMATCH');
      await page.getByTestId('unfinished-entry').waitFor();
      await page.getByRole('button', { name: `Discard ${tamper.host}/test/oci:latest` }).click();
      await expect.poll(() => page.getByTestId('unfinished-entry').count()).toBe(0);
    } finally {
      relay.rate = 0;
      tamper.rules = {};
      await page.context().close();
    }
  });
});
