// The cache through the page in Debian's Chromium: offline re-pulls with the registry gone (every
// format, and a digest), two images sharing a base layer in the storage panel (delete one, clear
// all), and a stored blob tampered with in IndexedDB, fetched again. Judged by skopeo/umoci, the
// relay's request log in front of the registry and IndexedDB's own contents.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { cacheContents } from '../helpers/idb-cache.ts';
import { validateDockerArchiveLayers, validateOciArchive } from '../helpers/validate-oci.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let browser: Browser;
let server: RunningServer;
let dir: string;
/** In front of the anonymous registry; stopped by the offline test. */
let offlineRelay: TamperProxy;
/** In front of the anonymous registry, logging what the page fetches. */
let relay: TamperProxy;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-e2e-cache-'));
  offlineRelay = await startTamperProxy(env.anon.url);
  relay = await startTamperProxy(env.anon.url);
  server = await startAppServer([offlineRelay.host, relay.host]);
  browser = await launchChromium();
});

const pageErrors: string[] = [];
afterEach(() => {
  expect(pageErrors.splice(0), 'uncaught errors in the page').toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await offlineRelay?.close();
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

async function openApp(): Promise<Page> {
  const ctx = await browser.newContext({ acceptDownloads: true });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(server.url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  // These tests take the download the Download button offers when the pull ends (the streamed
  // paths are tests/e2e/save.test.ts).
  await page.getByLabel('Save to').selectOption('blob');
  return page;
}

async function pullAndSave(page: Page, name: string, format: string): Promise<string> {
  await page.getByLabel('Image', { exact: true }).fill(name);
  await page.getByLabel('Format').selectOption(format);
  await page.getByRole('button', { name: 'Pull' }).click();
  const button = page.getByTestId('download');
  await Promise.race([
    button.waitFor({ timeout: 90_000 }),
    page
      .getByTestId('error')
      .waitFor({ timeout: 90_000 })
      .then(async () => {
        throw new Error(`pull failed in the page: ${await page.getByTestId('error').textContent()}`);
      }),
  ]);
  const [download] = await Promise.all([page.waitForEvent('download'), button.click()]);
  const path = join(dir, `${Date.now()}-${format}-${download.suggestedFilename()}`);
  await download.saveAs(path);
  return path;
}

const layersOf = (raw: string) => (JSON.parse(raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
const blobGets = (r: TamperProxy, since: number, repository: string) =>
  r.requests
    .slice(since)
    .filter((q) => q.method === 'GET' && q.path.startsWith(`/v2/${repository}/blobs/`))
    .map((q) => q.path.split('/').pop()!);

describe('offline', () => {
  it('a tag pulled once re-pulls in every format with the registry gone ("cached at …, registry unreachable"); a digest too', async () => {
    const fixture = env.fixtures.multi;
    const name = `${offlineRelay.host}/${fixture.path}`;
    const amd64 = fixture.children!.find((c) => c.platform.architecture === 'amd64')!;
    const page = await openApp();
    await pullAndSave(page, name, 'docker');
    await expect.poll(() => page.getByTestId('cached-image').count()).toBe(1);
    await expect(page.getByTestId('offline-note').count()).resolves.toBe(0);
    await offlineRelay.close();

    for (const format of ['docker', 'oci', 'tarball', 'legacy']) {
      const file = await pullAndSave(page, name, format);
      const note = page.getByTestId('offline-note');
      expect((await note.textContent())?.replace(/\s+/g, ' ')).toMatch(/Working offline\..*cached at .*registry unreachable/s);
      if (format === 'oci') {
        await validateOciArchive({
          file,
          storageDir: env.storageDir,
          skopeoEnv: env.skopeoEnv,
          target: amd64.manifest,
          config: amd64.config,
          annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
          umoci: { tag: 'latest', files: ['etc/longshore-arch', 'usr/bin/tool'] },
        });
      } else {
        await validateDockerArchiveLayers({
          file,
          storageDir: env.storageDir,
          skopeoEnv: env.skopeoEnv,
          images: [{ manifest: amd64.manifest, config: amd64.config, repoTags: [name] }],
          layers: format === 'legacy' ? 'uncompressed' : 'compressed',
        });
      }
    }

    // A digest needs no network: content-addressed, straight from the cache.
    const pinned = `${offlineRelay.host}/${fixture.repository}@${amd64.manifest.digest}`;
    const file = await pullAndSave(page, pinned, 'docker');
    expect(await page.getByTestId('cache-digest-note').textContent()).toContain('no network was needed');
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [
        {
          manifest: amd64.manifest,
          config: amd64.config,
          repoTags: [`${offlineRelay.host}/${fixture.repository}:digest-${amd64.manifest.digest.slice(7)}`],
        },
      ],
      layers: 'compressed',
    });
    await page.context().close();
  });
});

describe('the storage panel', () => {
  it('two images sharing a base layer: only the missing blobs fetched, both listed with the shared blob, delete one, clear all', async () => {
    const repo = env.fixtures.oci.repository;
    const latest = layersOf(env.fixtures.oci.manifest.raw);
    const v1 = layersOf(env.fixtures.ociV1.manifest.raw);
    const base = latest[0]!;
    expect(v1[0]).toBe(base);
    const page = await openApp();
    let mark = relay.requests.length;
    await pullAndSave(page, `${relay.host}/${env.fixtures.oci.path}`, 'docker');
    expect(
      blobGets(relay, mark, repo)
        .filter((d) => latest.includes(d))
        .sort(),
    ).toEqual([...latest].sort());
    mark = relay.requests.length;
    await pullAndSave(page, `${relay.host}/${env.fixtures.ociV1.path}`, 'docker');
    // The registry was asked only for what the first pull did not bring (and the config).
    expect(blobGets(relay, mark, repo).filter((d) => d !== env.fixtures.ociV1.config.digest)).toEqual(v1.slice(1));

    const rows = page.getByTestId('cached-image');
    await expect.poll(() => rows.count()).toBe(2);
    expect(await rows.evaluateAll((r) => r.map((e) => e.getAttribute('data-digest')))).toEqual([
      env.fixtures.ociV1.manifest.digest,
      env.fixtures.oci.manifest.digest,
    ]);
    expect(
      await page
        .getByTestId('shared-blobs')
        .locator('li')
        .evaluateAll((l) => l.map((e) => e.getAttribute('data-key'))),
    ).toEqual([base]);
    expect(await page.getByTestId('storage-usage').textContent()).toContain('Shared between images');

    await page.getByRole('button', { name: new RegExp(`^Delete ${relay.host}/test/oci:v1 `) }).click();
    await expect.poll(() => rows.count()).toBe(1);
    const { keys } = await cacheContents(page);
    expect(keys).toContain(`blob:${base}`);
    for (const d of latest) expect(keys).toContain(`blob:${d}`);
    for (const d of v1.slice(1)) expect(keys).not.toContain(`blob:${d}`);

    await page.getByRole('button', { name: 'Clear all' }).click();
    await page.getByTestId('storage-empty').waitFor();
    expect((await cacheContents(page)).keys.filter((k) => k.startsWith('blob:'))).toEqual([]);
    await page.context().close();
  });
  it('a budget set in the panel evicts the least recently used image after the next pull, never the one just pulled', async () => {
    const latest = layersOf(env.fixtures.oci.manifest.raw);
    const v1 = layersOf(env.fixtures.ociV1.manifest.raw);
    const page = await openApp();
    await pullAndSave(page, `${relay.host}/${env.fixtures.oci.path}`, 'docker');
    // 100 bytes: less than either of these (small) images, so only the one just pulled survives.
    await page.getByLabel('Cache budget (MB)').fill('0.0001');
    await page.getByRole('button', { name: 'Set', exact: true }).click();
    await expect.poll(() => page.getByLabel('Cache budget (MB)').inputValue()).toBe('0.0001');
    await pullAndSave(page, `${relay.host}/${env.fixtures.ociV1.path}`, 'docker');
    const rows = page.getByTestId('cached-image');
    await expect
      .poll(() => rows.evaluateAll((r) => r.map((e) => e.getAttribute('data-digest'))))
      .toEqual([env.fixtures.ociV1.manifest.digest]);
    const blobs = (await cacheContents(page)).keys.filter((k) => k.startsWith('blob:')).sort();
    expect(blobs).toEqual(v1.map((d) => `blob:${d}`).sort());
    for (const d of latest.slice(1)) expect(blobs).not.toContain(`blob:${d}`);
    await page.context().close();
  });
});

describe('trust', () => {
  it('a stored layer tampered with in IndexedDB is dropped, fetched again and never written into the download', async () => {
    const truth = env.fixtures.oci;
    const name = `${relay.host}/${truth.path}`;
    const victim = layersOf(truth.manifest.raw)[1]!;
    const page = await openApp();
    await pullAndSave(page, name, 'docker');
    // Flip one byte in the middle of the stored layer, keeping its size (what disk rot leaves).
    const flipped = await page.evaluate(async (key) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const open = indexedDB.open('longshore');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => resolve(open.result);
      });
      const req = <T>(r: IDBRequest<T>) =>
        new Promise<T>((resolve, reject) => {
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
      const record = (await req(db.transaction('blobs').objectStore('blobs').get(`blob:${key}`))) as { segments: string[]; file?: string };
      if (record.file) {
        // Staged by a layer worker: the bytes are an OPFS file the record names.
        const root = await navigator.storage.getDirectory();
        const handle = await (
          await (await root.getDirectoryHandle('longshore-inflight')).getDirectoryHandle('longshore')
        ).getFileHandle(record.file);
        const bytes = new Uint8Array(await (await handle.getFile()).arrayBuffer());
        bytes[bytes.length >> 1]! ^= 0xff;
        const writable = await handle.createWritable();
        await writable.write(bytes);
        await writable.close();
        db.close();
        return bytes.length;
      }
      const seg = record.segments[0]!;
      const blob = (await req(db.transaction('blobs').objectStore('blobs').get(seg))) as Blob;
      const bytes = new Uint8Array(await blob.arrayBuffer());
      bytes[bytes.length >> 1]! ^= 0xff;
      await req(
        db
          .transaction('blobs', 'readwrite')
          .objectStore('blobs')
          .put(new Blob([bytes]), seg),
      );
      db.close();
      return bytes.length;
    }, victim);
    expect(flipped).toBeGreaterThan(0);

    const mark = relay.requests.length;
    const file = await pullAndSave(page, name, 'docker');
    expect(blobGets(relay, mark, truth.repository).filter((d) => d !== truth.config.digest)).toEqual([victim]);
    await validateDockerArchiveLayers({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      images: [{ manifest: truth.manifest, config: truth.config, repoTags: [name] }],
      layers: 'compressed',
    });
    await page.context().close();
  });
});
