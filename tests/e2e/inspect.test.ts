// The inspector in Chromium, Firefox and WebKit (tests/helpers/e2e.ts). The page is a small harness built here with Vite that
// mounts src/ui/inspect/Inspector.svelte alone (so this runs whether or not App.svelte mounts it
// yet), served by the longshore server. Archives go in through the file input, as a user would.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TarEntryType, tarBytes, type TarEntryHeader } from '../../src/core/tar/index.ts';
import { parseConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { DIST_DIR, startAppServer } from '../helpers/app-server.ts';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { run, runText } from '../helpers/command.ts';

const env = inject('registryEnv');

/** Whether the built app (dist/) mounts the inspector yet: App.svelte gains it in one line. */
function appHasInspector(): boolean {
  const assets = join(DIST_DIR, 'assets');
  if (!existsSync(assets)) return false;
  return readdirSync(assets).some((f) => f.endsWith('.js') && readFileSync(join(assets, f), 'utf8').includes('Open local archive'));
}
const SRC = resolve(import.meta.dirname, '../../src');
const BIG = { dirs: 100, files: 1000 };
let dir: string;
let server: RunningServer;
let fsArchive: string;
let bigArchive: string;

/** A crane-style tarball of one gzip layer with BIG.dirs × BIG.files empty files (100,100 entries). */
async function writeBigArchive(path: string): Promise<void> {
  const entries: { header: TarEntryHeader }[] = [];
  const h = (p: string, type: TarEntryHeader['type']): { header: TarEntryHeader } => ({
    header: { path: p, type, size: 0, mode: type === TarEntryType.Directory ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_704_067_200 },
  });
  for (let d = 0; d < BIG.dirs; d++) {
    const name = `d${String(d).padStart(3, '0')}`;
    entries.push(h(`${name}/`, TarEntryType.Directory));
    for (let f = 0; f < BIG.files; f++)
      entries.push(h(`${name}/file-${String(d * BIG.files + f).padStart(6, '0')}.txt`, TarEntryType.File));
  }
  const layer = tarBytes(entries);
  const gz = gzipSync(layer, { level: 1 });
  const hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [`sha256:${hex(layer)}`] },
    history: [{ created_by: '100k files' }],
  });
  const configName = `sha256:${hex(config)}`;
  const layerName = `${hex(gz)}.tar.gz`;
  const manifest = JSON.stringify([{ Config: configName, RepoTags: ['test/big:latest'], Layers: [layerName] }]);
  const file = (p: string, content: Uint8Array) => ({
    header: { path: p, type: TarEntryType.File, size: content.length, mode: 0o644, uid: 0, gid: 0, mtime: 0 } as TarEntryHeader,
    content,
  });
  const enc = new TextEncoder();
  await writeFile(
    path,
    tarBytes([file('manifest.json', enc.encode(manifest)), file(configName, enc.encode(config)), file(layerName, new Uint8Array(gz))]),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-inspect-e2e-'));
  fsArchive = join(dir, 'test-fs.tar');
  bigArchive = join(dir, 'big.tar');
  // Inside the project's node_modules/.cache, so the harness resolves packages ('svelte') from the project.
  const harness = resolve(import.meta.dirname, '../../node_modules/.cache/longshore-inspect-e2e');
  await rm(harness, { recursive: true, force: true });
  await run('mkdir', ['-p', harness]);
  await writeFile(
    join(harness, 'index.html'),
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>inspector</title></head><body><div id="app"></div><script type="module" src="./main.ts"></script></body></html>',
  );
  await writeFile(
    join(harness, 'main.ts'),
    [
      `import { mount } from 'svelte';`,
      `import Inspector from '${SRC}/ui/inspect/Inspector.svelte';`,
      `import '${SRC}/ui/app.css';`,
      `mount(Inspector, { target: document.getElementById('app')!, props: {} });`,
    ].join('\n'),
  );
  await Promise.all([
    run(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        `docker://${env.anon.host}/${env.fixtures.fs.path}`,
        `oci-archive:${fsArchive}:test/fs:latest`,
      ],
      { env: { ...process.env, ...env.skopeoEnv } },
    ),
    writeBigArchive(bigArchive),
    build({
      root: harness,
      configFile: false,
      logLevel: 'warn',
      plugins: [svelte({ configFile: false })],
      worker: { format: 'es' },
      resolve: { conditions: ['browser'] },
      build: { outDir: join(harness, 'dist'), emptyOutDir: true, target: 'es2022' },
    }),
  ]);
  server = await startServer(
    parseConfig(
      { listen: { host: '127.0.0.1', port: 0 }, registries: [], mirrors: {}, tokenRealms: [], allowLoopback: true },
      'inspect e2e',
    ),
    { staticDir: join(harness, 'dist') },
  );
}, 180_000);

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Watch the main thread: the longest gap between 20 ms timer ticks (a frozen page shows as a long gap; works in every engine). */
async function watchMainThread(page: E2EPage): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { longestGap: number };
    w.longestGap = 0;
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      w.longestGap = Math.max(w.longestGap, now - last - 20);
      last = now;
    }, 20);
  });
}

async function openPage(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open(server.url, { width: 1400, height: 1000 });
  await page.waitFor('[data-testid="archive-input"]');
  return page;
}

/** expect.poll with room for a loaded CI machine (its default is 1 s). */
const poll = <T>(fn: () => Promise<T> | T, timeout = 20_000) => expect.poll(fn, { timeout, interval: 50 });

const rowPaths = (page: E2EPage) => page.attrs('[data-testid="entry-row"]', 'data-path');

async function pickView(page: E2EPage, testId: string): Promise<void> {
  await page.click(`[data-testid="${testId}"] input`);
}

forEachEngine((engine) => {
  describe('the inspector in the browser', () => {
    it('opens an OCI archive, filters, sorts, explains whiteouts, and downloads from the merged view', async () => {
      const page = await openPage(engine);
      await page.setInputFiles('#inspect-archive', fsArchive);
      await page.waitFor('[data-testid="inspected-image"]');
      expect(await page.text('[data-testid="inspected-image"]')).toMatch(/test\/fs:latest.*linux\/amd64.*4 layers.*OCI image layout/s);
      expect(await page.text('[data-testid="history"]')).toMatch(/empty layer\s*ENV LONGSHORE_STEP=env-only/);
      expect(await page.text('[data-testid="image-config"]')).toContain('["/bin/su-like"]');

      // Layer 1, as a tree: top-level directories first.
      await expect.poll(() => rowPaths(page), { timeout: 20_000 }).toContain('etc');
      await page.fill('[data-testid="filter"]', 'passwd');
      await poll(() => rowPaths(page)).toEqual(['etc', 'etc/passwd']);

      // A markup name is text, never markup.
      await page.fill('[data-testid="filter"]', 'onerror');
      await poll(() => rowPaths(page)).toEqual(['weird', 'weird/<img src=x onerror=alert(1)>.txt']);
      expect(await page.count('[data-testid="entries"] img')).toBe(0);
      expect(await page.text('[data-testid="entries"]')).toContain('<img src=x onerror=alert(1)>.txt');

      // Table, sorted by size: the biggest file first.
      await page.fill('[data-testid="filter"]', '');
      await page.click('[data-testid="mode-flat"]');
      await page.click('[data-testid="sort-size"]');
      await poll(async () => (await rowPaths(page))[0]).toBe('var/cache/app/data.bin');

      // Layer 2's whiteouts and opaque marker, explained.
      await pickView(page, 'view-layer-2');
      await page.fill('[data-testid="filter"]', '.wh.');
      await expect
        .poll(() => page.texts('[data-testid="whiteout-note"]'), { timeout: 20_000 })
        .toEqual(
          expect.arrayContaining([
            expect.stringMatching(/whiteout: deletes \/etc\/remove-me \(1 entry, 14 B, from layer 1\)/),
            expect.stringMatching(/whiteout: deletes \/opt\/old \(4 entries/),
            expect.stringMatching(/opaque: hides lower contents of \/var\/lib\/opaque \(3 entries/),
          ]),
        );
      await page.click('[data-testid="entry-row"]');
      await poll(() => page.text('[data-testid="whiteout-explained"]')).toMatch(/deletes|hides/);

      // The merged view: hard-b keeps the content hard-a had before layer 2 replaced it.
      await pickView(page, 'view-merged');
      await page.fill('[data-testid="filter"]', 'hard-');
      await poll(() => rowPaths(page)).toEqual(['data/hard-a', 'data/hard-b']);
      await page.click('[data-testid="entry-row"]:nth-child(2)');
      const download = await page.downloadBy('[data-testid="download-file"]');
      expect(download.name).toBe('hard-b');
      expect(await readFile(download.path, 'utf8')).toBe('original content of hard-a\n');

      // Keyboard: focus the grid and move down.
      await page.evaluate(() => (document.querySelector('[data-testid="entry-rows"]') as HTMLElement).focus());
      await page.press('ArrowUp');
      await poll(() => page.attr('[data-testid="entry-row"][aria-selected="true"]', 'data-path')).toBe('data/hard-a');

      // Export the merged filesystem; GNU tar reads it and lists as many entries as the view has.
      await page.fill('[data-testid="filter"]', '');
      await poll(async () => Number(await page.attr('[data-testid="entry-rows"]', 'data-total'))).toBeGreaterThan(40);
      const total = Number(await page.attr('[data-testid="entry-rows"]', 'data-total'));
      const exported = await page.downloadBy('[data-testid="export"]');
      expect(exported.name).toBe('test-fs-rootfs.tar');
      const exportPath = exported.path;
      const listed = (await runText('tar', ['-tf', exportPath])).split('\n').filter(Boolean);
      expect(listed.length).toBe(total);
      expect(listed).toContain('data/hard-b');
      await engine.finish(page);
    });

    it('lists a 100,000-entry layer without freezing the page', async () => {
      const page = await openPage(engine);
      await watchMainThread(page);
      const started = Date.now();
      await page.setInputFiles('#inspect-archive', bigArchive);
      await page.waitFor('[data-testid="entry-row"]', { timeout: 60_000 });
      const firstRows = Date.now() - started;
      await page.click('[data-testid="mode-flat"]');
      const entries = BIG.dirs * (BIG.files + 1);
      await expect
        .poll(() => page.attr('[data-testid="entry-rows"]', 'data-total'), { timeout: 120_000, interval: 100 })
        .toBe(String(entries));
      await expect.poll(() => page.attr('[data-testid="view-layer-1"]', 'data-state'), { timeout: 60_000 }).toBe('complete');
      const total = Date.now() - started;
      // Only the rows in sight are in the DOM; jump to the end with the keyboard.
      expect(await page.count('[data-testid="entry-row"]')).toBeLessThan(60);
      await page.evaluate(() => (document.querySelector('[data-testid="entry-rows"]') as HTMLElement).focus());
      await page.press('End');
      await expect.poll(async () => (await rowPaths(page)).at(-1), { timeout: 10_000 }).toBe('d099/file-099999.txt');
      const longest = await page.evaluate(() => (window as unknown as { longestGap: number }).longestGap);
      console.log(
        `[inspect e2e] ${engine.name} 100k-entry layer: first rows ${firstRows} ms, fully listed ${total} ms, longest main-thread gap ${Math.round(longest)} ms`,
      );
      expect(longest).toBeLessThan(2000);
      await engine.finish(page);
    });

    it('offers the pulled image to browse, and lists it from IndexedDB only when asked', async () => {
      expect(appHasInspector(), 'the built app (dist/) mounts the inspector').toBe(true);
      const app = await startAppServer([env.anon.host], { mirrors: { 'docker.io': env.anon.url } });
      try {
        const page = await engine.open(app.url, { width: 1400, height: 1000 });
        await page.waitFor('#image-name');
        await page.fill('#image-name', 'test/fs:latest');
        await page.click('form.pull-form button[type="submit"]');
        const browse = '[data-testid="browse-pulled"]';
        await page.waitFor(browse, { timeout: 45_000 });
        expect(await page.text(browse)).toContain('test/fs:latest');
        // Nothing is opened or listed until the person asks (auto-opening took a worker round trip:
        // give it time to show if it were there).
        await new Promise((r) => setTimeout(r, 750));
        expect(await page.count('[data-testid="inspected-image"]')).toBe(0);
        expect(await page.evaluate(() => document.body.textContent?.includes('Opening…'))).toBe(false);
        await page.click(browse);
        await page.waitFor('[data-testid="inspected-image"]', { timeout: 45_000 });
        expect(await page.count(browse)).toBe(0);
        // The keyboard lands on the image that opened, not on the vanished button.
        await expect.poll(() => page.focused()).toBe('inspected-image');
        await expect.poll(() => page.attr('[data-testid="view-merged"]', 'data-state'), { timeout: 30_000 }).toBe('ready');
        await pickView(page, 'view-merged');
        await page.fill('[data-testid="filter"]', 'hard-b');
        await poll(() => rowPaths(page)).toEqual(['data', 'data/hard-b']);
        await page.click('[data-testid="entry-row"]:nth-child(2)');
        const download = await page.downloadBy('[data-testid="download-file"]');
        expect(await readFile(download.path, 'utf8')).toBe('original content of hard-a\n');
        await engine.finish(page);
      } finally {
        await app.close();
      }
    });
  });
});
