// Registries as people meet them, part two, through the page in Chromium, Firefox and WebKit
// (tests/helpers/e2e.ts): mirrors that are down, lack the image or have it (the page says which one
// served), and Windows-like images whose foreign layer lives on another server (fetched where the
// proxy allows it, else kept as a descriptor and explained). Judged by the page's own words and by
// skopeo on the download.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunningServer } from '../../src/proxy/serve.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { SEL, waitPulled } from '../helpers/app-page.ts';
import { freePort, run, runText } from '../helpers/command.ts';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { pushForeignImage, type ForeignImage } from '../helpers/foreign-image.ts';
import { startRegistries, type Registries } from '../helpers/registries.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';

const env = inject('registryEnv');
let server: RunningServer;
let dir: string;
/** A second set of registries with its own, empty storage: the mirror that lacks the image. */
let empty: Registries;
/** The anonymous registry under another name, so it can have a mirror of its own. */
let front: TamperProxy;
/** Registry hosts nothing listens on. */
let downMirror: string;
let goneRegistry: string;
let allowedImage: ForeignImage;
let refusedImage: ForeignImage;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-e2e-more-'));
  [empty, front, downMirror, goneRegistry] = await Promise.all([
    startRegistries(),
    startTamperProxy(env.anon.url),
    freePort().then((p) => `127.0.0.1:${p}`),
    freePort().then((p) => `127.0.0.1:${p}`),
  ]);
  allowedImage = await pushForeignImage(env.anon, env.storageDir, 'foreign/allowed', join(dir, 'allowed'));
  refusedImage = await pushForeignImage(env.anon, env.storageDir, 'foreign/refused', join(dir, 'refused'));
  server = await startAppServer([env.anon.host, front.host], {
    mirrors: {
      [env.anon.host]: `http://${downMirror}`, // down: the registry serves
      [front.host]: empty.env.anon.url, // lacks the image: the registry serves
      [goneRegistry]: env.anon.url, // has it (and the registry itself is gone)
    },
    foreignLayerHosts: [`${allowedImage.layers.origin}/layers/`],
  });
}, 90_000);

afterAll(async () => {
  await server?.close();
  await Promise.all([front?.close(), empty?.stop(), allowedImage?.layers.close(), refusedImage?.layers.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openApp(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open(server.url);
  await page.waitFor(SEL.name);
  // The archive the Download button offers when the pull ends (planned before the pull all the same).
  await page.select(SEL.saveTo, 'blob');
  return page;
}

/** Pulls `name` and waits for the download button (failing with the page's error otherwise). */
async function pullReady(page: E2EPage, name: string): Promise<void> {
  await page.fill(SEL.name, name);
  await page.click(SEL.pull);
  await waitPulled(page, SEL.download, 45_000);
}

async function servedBy(page: E2EPage): Promise<{ by: string | null; reason: string | null; text: string | null }> {
  const line = '[data-testid="served-by"]';
  await page.waitFor(line, { timeout: 10_000 });
  return { by: await page.attr(line, 'data-served-by'), reason: await page.attr(line, 'data-reason'), text: await page.text(line) };
}

forEachEngine((engine) => {
  describe('mirrors with fallback, in the page', () => {
    it('a mirror that is down: the registry serves, and the page says so', async () => {
      const page = await openApp(engine);
      await pullReady(page, `${env.anon.host}/${env.fixtures.oci.path}`);
      const line = await servedBy(page);
      expect(line).toMatchObject({ by: 'upstream', reason: 'down' });
      expect(line.text).toContain(`mirror ${downMirror} down, served by the registry itself`);
    });

    it('a mirror that lacks the image: the registry serves', async () => {
      const page = await openApp(engine);
      await pullReady(page, `${front.host}/${env.fixtures.v2s2.path}`);
      const line = await servedBy(page);
      expect(line).toMatchObject({ by: 'upstream', reason: 'missing' });
      expect(line.text).toContain(`mirror ${empty.env.anon.host} lacks it`);
    });

    it('a mirror that has the image serves it', async () => {
      const page = await openApp(engine);
      await pullReady(page, `${goneRegistry}/${env.fixtures.oci.path}`);
      const line = await servedBy(page);
      expect(line.by).toBe('mirror');
      expect(line.text).toContain(`served by mirror ${env.anon.host}`);
    });
  });

  describe('foreign layers, in the page', () => {
    it('allowed: the layer comes from its url and the docker archive loads in skopeo', async () => {
      const page = await openApp(engine);
      const mark = allowedImage.layers.requests.length;
      await pullReady(page, `${env.anon.host}/${allowedImage.path}`);
      expect(await page.count('[data-testid="pull-warning"]')).toBe(0);
      expect(allowedImage.layers.requests.slice(mark).some((r) => r.url.includes(allowedImage.foreignDigest.slice(7)))).toBe(true);
      const { path: file } = await page.downloadBy(SEL.download);
      const skopeoEnv = { ...process.env, ...env.skopeoEnv };
      await run(
        'skopeo',
        ['--override-os', 'windows', 'copy', `docker-archive:${file}`, `oci:${join(dir, `allowed-copy-${engine.name}`)}:x`],
        {
          env: skopeoEnv,
        },
      );
      expect(await runText('tar', ['-tf', file])).toContain(allowedImage.foreignDigest.slice(7));
    });

    it('not allowed: the pull goes on, the archive keeps the descriptor, and the page says how to allow it', async () => {
      const page = await openApp(engine);
      const mark = refusedImage.layers.requests.length;
      await pullReady(page, `${env.anon.host}/${refusedImage.path}`);
      const warning = '[data-testid="pull-warning"]';
      await page.waitFor(warning, { timeout: 10_000 });
      expect(await page.attr(warning, 'data-code')).toBe('FOREIGN_LAYER');
      const text = (await page.text(warning)) ?? '';
      expect(text).toContain(new URL(refusedImage.foreignUrl).host);
      expect(text).toContain('foreignLayerHosts');
      expect(refusedImage.layers.requests.length).toBe(mark);
      const { path: file } = await page.downloadBy(SEL.download);
      // docker save's LayerSources names the layer's source; its bytes are not in the archive.
      const entries = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as {
        LayerSources?: Record<string, { urls?: string[] }>;
      }[];
      expect(Object.values(entries[0]!.LayerSources ?? {})[0]?.urls).toEqual([refusedImage.foreignUrl]);
      expect(await runText('tar', ['-tf', file])).not.toContain(refusedImage.foreignDigest.slice(7));
    });
  });
});
