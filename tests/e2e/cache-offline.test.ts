// The cache through the page in Chromium, Firefox and WebKit (tests/helpers/e2e.ts): offline
// re-pulls with the registry gone (every format, and a digest), two images sharing a base layer in
// the storage panel (delete one, clear all), and a stored blob tampered with in IndexedDB, fetched
// again. Judged by skopeo/umoci, the relay's request log in front of the registry and IndexedDB's
// own contents.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { forEachEngine, selectedEngines, type E2EPage, type EngineHandle, type EngineName } from '../helpers/e2e.ts';
import { SEL, waitPulled } from '../helpers/app-page.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { cacheContents } from '../helpers/idb-cache.ts';
import { validateDockerArchiveLayers, validateOciArchive } from '../helpers/validate-oci.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
/** One per engine, in front of the anonymous registry; stopped by that engine's offline test. */
const offlineRelays = new Map<EngineName, TamperProxy>();
/** In front of the anonymous registry, logging what the page fetches. */
let relay: TamperProxy;

beforeAll(async () => {
  for (const e of selectedEngines()) offlineRelays.set(e, await startTamperProxy(env.anon.url));
  relay = await startTamperProxy(env.anon.url);
  server = await startAppServer([...[...offlineRelays.values()].map((r) => r.host), relay.host]);
});

afterAll(async () => {
  await server?.close();
  for (const r of offlineRelays.values()) await r.close();
  await relay?.close();
});

async function openApp(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open(server.url);
  await page.waitFor(SEL.name);
  // These tests take the download the Download button offers when the pull ends (the streamed
  // paths are tests/e2e/save.test.ts).
  await page.select(SEL.saveTo, 'blob');
  return page;
}

async function pullAndSave(page: E2EPage, name: string, format: string): Promise<string> {
  await page.fill(SEL.name, name);
  await page.select(SEL.format, format);
  await page.click(SEL.pull);
  await waitPulled(page, SEL.download, 90_000);
  return (await page.downloadBy(SEL.download)).path;
}

const layersOf = (raw: string) => (JSON.parse(raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
const blobGets = (r: TamperProxy, since: number, repository: string) =>
  r.requests
    .slice(since)
    .filter((q) => q.method === 'GET' && q.path.startsWith(`/v2/${repository}/blobs/`))
    .map((q) => q.path.split('/').pop()!);

forEachEngine((engine) => {
  describe('offline', () => {
    it('a tag pulled once re-pulls in every format with the registry gone ("cached at …, registry unreachable"); a digest too', async () => {
      const fixture = env.fixtures.multi;
      const offlineRelay = offlineRelays.get(engine.name)!;
      const name = `${offlineRelay.host}/${fixture.path}`;
      const amd64 = fixture.children!.find((c) => c.platform.architecture === 'amd64')!;
      const page = await openApp(engine);
      await pullAndSave(page, name, 'docker');
      await expect.poll(() => page.count('[data-testid="cached-image"]')).toBe(1);
      expect(await page.count('[data-testid="offline-note"]')).toBe(0);
      await offlineRelay.close();

      // Every format in one engine: the archive writers are the core's, the same in every engine;
      // what differs per engine (the cache read back offline, the note) one format shows.
      for (const format of engine.name === 'chromium' ? ['docker', 'oci', 'tarball', 'legacy'] : ['docker']) {
        const file = await pullAndSave(page, name, format);
        const note = await page.text('[data-testid="offline-note"]');
        expect(note?.replace(/\s+/g, ' ')).toMatch(/Working offline\..*cached at .*registry unreachable/s);
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
      expect(await page.text('[data-testid="cache-digest-note"]')).toContain('no network was needed');
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
    });
  });

  describe('the storage panel', () => {
    it('two images sharing a base layer: only the missing blobs fetched, both listed with the shared blob, delete one, clear all', async () => {
      const repo = env.fixtures.oci.repository;
      const latest = layersOf(env.fixtures.oci.manifest.raw);
      const v1 = layersOf(env.fixtures.ociV1.manifest.raw);
      const base = latest[0]!;
      expect(v1[0]).toBe(base);
      const page = await openApp(engine);
      // Layers only: the name field looks a name up (its manifest and config) whenever typing
      // pauses for 400 ms, which WebDriver's typing under load does mid-name ("…/test/oci" on the
      // way to "…/test/oci:v1"), so config GETs depend on timing; layer GETs come from pulls alone.
      // (A look-up still waiting when Pull is pressed is dropped, PullState.pull: it used to run
      // after the pull and its config GET landed in the next pull's count, a WebKit flake.)
      const configs = new Set([env.fixtures.oci.config.digest, env.fixtures.ociV1.config.digest]);
      const layerGets = (since: number) =>
        blobGets(relay, since, repo)
          .filter((d) => !configs.has(d))
          .sort();
      let mark = relay.requests.length;
      await pullAndSave(page, `${relay.host}/${env.fixtures.oci.path}`, 'docker');
      expect(layerGets(mark)).toEqual([...latest].sort());
      mark = relay.requests.length;
      await pullAndSave(page, `${relay.host}/${env.fixtures.ociV1.path}`, 'docker');
      // The registry was asked only for what the first pull did not bring.
      expect(layerGets(mark)).toEqual(v1.slice(1).sort());

      const rows = '[data-testid="cached-image"]';
      await expect.poll(() => page.count(rows)).toBe(2);
      expect(await page.attrs(rows, 'data-digest')).toEqual([env.fixtures.ociV1.manifest.digest, env.fixtures.oci.manifest.digest]);
      expect(await page.attrs('[data-testid="shared-blobs"] li', 'data-key')).toEqual([base]);
      expect(await page.text('[data-testid="storage-usage"]')).toContain('Shared between images');

      const v1Row = `${rows}[data-digest="${env.fixtures.ociV1.manifest.digest}"] button`;
      expect(await page.attr(v1Row, 'aria-label')).toMatch(new RegExp(`^Delete ${relay.host}/test/oci:v1 `));
      await page.click(v1Row);
      await expect.poll(() => page.count(rows)).toBe(1);
      const { keys } = await cacheContents(page);
      expect(keys).toContain(`blob:${base}`);
      for (const d of latest) expect(keys).toContain(`blob:${d}`);
      for (const d of v1.slice(1)) expect(keys).not.toContain(`blob:${d}`);

      await page.click('[data-testid="clear-all"]');
      await page.waitFor('[data-testid="storage-empty"]');
      expect((await cacheContents(page)).keys.filter((k) => k.startsWith('blob:'))).toEqual([]);
    });
    it('a budget set in the panel evicts the least recently used image after the next pull, never the one just pulled', async () => {
      const latest = layersOf(env.fixtures.oci.manifest.raw);
      const v1 = layersOf(env.fixtures.ociV1.manifest.raw);
      const page = await openApp(engine);
      await pullAndSave(page, `${relay.host}/${env.fixtures.oci.path}`, 'docker');
      // 100 bytes: less than either of these (small) images, so only the one just pulled survives.
      await page.fill('form.budget input', '0.0001');
      await page.click('form.budget button[type="submit"]');
      await expect.poll(() => page.evaluate(() => (document.querySelector('form.budget input') as HTMLInputElement).value)).toBe('0.0001');
      await pullAndSave(page, `${relay.host}/${env.fixtures.ociV1.path}`, 'docker');
      await expect.poll(() => page.attrs('[data-testid="cached-image"]', 'data-digest')).toEqual([env.fixtures.ociV1.manifest.digest]);
      const blobs = (await cacheContents(page)).keys.filter((k) => k.startsWith('blob:')).sort();
      expect(blobs).toEqual(v1.map((d) => `blob:${d}`).sort());
      for (const d of latest.slice(1)) expect(blobs).not.toContain(`blob:${d}`);
    });
  });

  describe('trust', () => {
    it('a stored layer tampered with in IndexedDB is dropped, fetched again and never written into the download', async () => {
      const truth = env.fixtures.oci;
      const name = `${relay.host}/${truth.path}`;
      const victim = layersOf(truth.manifest.raw)[1]!;
      const page = await openApp(engine);
      await pullAndSave(page, name, 'docker');
      // Flip one byte in the middle of the stored layer, keeping its size (what disk rot leaves).
      const flipped = await page.evaluate(async (key: string) => {
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
        const record = (await req(db.transaction('blobs').objectStore('blobs').get(`blob:${key}`))) as {
          segments: string[];
          file?: string;
        };
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
        // A Blob, or an ArrayBuffer where IndexedDB refuses Blobs (WebKit's ephemeral sessions).
        const stored = (await req(db.transaction('blobs').objectStore('blobs').get(seg))) as Blob | ArrayBuffer;
        const bytes = new Uint8Array(stored instanceof Blob ? await stored.arrayBuffer() : stored.slice(0));
        bytes[bytes.length >> 1]! ^= 0xff;
        await req(
          db
            .transaction('blobs', 'readwrite')
            .objectStore('blobs')
            .put(stored instanceof Blob ? new Blob([bytes]) : bytes.buffer, seg),
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
    });
  });
});
