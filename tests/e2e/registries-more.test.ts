// Registries as people meet them, part two, through the page in Debian's Chromium: mirrors that
// are down, lack the image or have it (the page says which one served), and Windows-like images
// whose foreign layer lives on another server (fetched where the proxy allows it, else kept as a
// descriptor and explained). Judged by the page's own words and by skopeo on the download.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../../src/proxy/serve.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { launchChromium } from '../helpers/browser.ts';
import { freePort, run, runText } from '../helpers/command.ts';
import { pushForeignImage, type ForeignImage } from '../helpers/foreign-image.ts';
import { startRegistries, type Registries } from '../helpers/registries.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';

const env = inject('registryEnv');
let browser: Browser;
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
  browser = await launchChromium();
}, 90_000);

const pageErrors: string[] = [];
afterEach(() => {
  expect(pageErrors.splice(0), 'uncaught errors in the page').toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await Promise.all([front?.close(), empty?.stop(), allowedImage?.layers.close(), refusedImage?.layers.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openApp(): Promise<Page> {
  const page = await (await browser.newContext({ acceptDownloads: true })).newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(server.url);
  await page.getByLabel('Image', { exact: true }).waitFor();
  // The archive the Download button offers when the pull ends (planned before the pull all the same).
  await page.getByLabel('Save to').selectOption('blob');
  return page;
}

/** Pulls `name` and waits for the download button (failing with the page's error otherwise). */
async function pullReady(page: Page, name: string): Promise<void> {
  await page.getByLabel('Image', { exact: true }).fill(name);
  await page.getByRole('button', { name: 'Pull' }).click();
  await Promise.race([
    page.getByTestId('download').waitFor({ timeout: 45_000 }),
    page
      .getByTestId('error')
      .waitFor({ timeout: 45_000 })
      .then(async () => {
        throw new Error(`pull failed in the page: ${await page.getByTestId('error').textContent()}`);
      }),
  ]);
}

async function servedBy(page: Page): Promise<{ by: string | null; reason: string | null; text: string | null }> {
  const line = page.getByTestId('served-by');
  await line.waitFor({ timeout: 10_000 });
  return { by: await line.getAttribute('data-served-by'), reason: await line.getAttribute('data-reason'), text: await line.textContent() };
}

describe('mirrors with fallback, in the page', () => {
  it('a mirror that is down: the registry serves, and the page says so', async () => {
    const page = await openApp();
    await pullReady(page, `${env.anon.host}/${env.fixtures.oci.path}`);
    const line = await servedBy(page);
    expect(line).toMatchObject({ by: 'upstream', reason: 'down' });
    expect(line.text).toContain(`mirror ${downMirror} down, served by the registry itself`);
    await page.context().close();
  });

  it('a mirror that lacks the image: the registry serves', async () => {
    const page = await openApp();
    await pullReady(page, `${front.host}/${env.fixtures.v2s2.path}`);
    const line = await servedBy(page);
    expect(line).toMatchObject({ by: 'upstream', reason: 'missing' });
    expect(line.text).toContain(`mirror ${empty.env.anon.host} lacks it`);
    await page.context().close();
  });

  it('a mirror that has the image serves it', async () => {
    const page = await openApp();
    await pullReady(page, `${goneRegistry}/${env.fixtures.oci.path}`);
    const line = await servedBy(page);
    expect(line.by).toBe('mirror');
    expect(line.text).toContain(`served by mirror ${env.anon.host}`);
    await page.context().close();
  });
});

describe('foreign layers, in the page', () => {
  it('allowed: the layer comes from its url and the docker archive loads in skopeo', async () => {
    const page = await openApp();
    const mark = allowedImage.layers.requests.length;
    await pullReady(page, `${env.anon.host}/${allowedImage.path}`);
    expect(await page.getByTestId('pull-warning').count()).toBe(0);
    expect(allowedImage.layers.requests.slice(mark).some((r) => r.url.includes(allowedImage.foreignDigest.slice(7)))).toBe(true);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
    const file = join(dir, 'allowed.tar');
    await download.saveAs(file);
    const skopeoEnv = { ...process.env, ...env.skopeoEnv };
    await run('skopeo', ['--override-os', 'windows', 'copy', `docker-archive:${file}`, `oci:${join(dir, 'allowed-copy')}:x`], {
      env: skopeoEnv,
    });
    expect(await runText('tar', ['-tf', file])).toContain(allowedImage.foreignDigest.slice(7));
    await page.context().close();
  });

  it('not allowed: the pull goes on, the archive keeps the descriptor, and the page says how to allow it', async () => {
    const page = await openApp();
    const mark = refusedImage.layers.requests.length;
    await pullReady(page, `${env.anon.host}/${refusedImage.path}`);
    const warning = page.getByTestId('pull-warning');
    await warning.waitFor({ timeout: 10_000 });
    expect(await warning.getAttribute('data-code')).toBe('FOREIGN_LAYER');
    const text = (await warning.textContent()) ?? '';
    expect(text).toContain(new URL(refusedImage.foreignUrl).host);
    expect(text).toContain('foreignLayerHosts');
    expect(refusedImage.layers.requests.length).toBe(mark);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
    const file = join(dir, 'refused.tar');
    await download.saveAs(file);
    // docker save's LayerSources names the layer's source; its bytes are not in the archive.
    const entries = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as {
      LayerSources?: Record<string, { urls?: string[] }>;
    }[];
    expect(Object.values(entries[0]!.LayerSources ?? {})[0]?.urls).toEqual([refusedImage.foreignUrl]);
    expect(await runText('tar', ['-tf', file])).not.toContain(refusedImage.foreignDigest.slice(7));
    await page.context().close();
  });
});
