// Hangs are impossible to miss, in every engine: a registry that stops answering mid-pull gives
// the stage's STALLED error within the watchdog's bound (shortened here with ?stallTimeout), the
// worker is replaced, and pressing Pull again works. Also the guard against Firefox's old hang:
// fresh pages, each looking up a missing name and pulling, must each answer at the first try.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startStallRelay, type StallRelay } from '../helpers/stall-relay.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
let relay: StallRelay;
const STALL_MS = 3000;

const SEL = {
  name: '#image-name',
  pull: 'form.pull-form button[type="submit"]',
  error: '[data-testid="error"]',
  download: '[data-testid="download"]',
  nameHelp: '[data-testid="name-help"]',
};

beforeAll(async () => {
  relay = await startStallRelay(env.anon.url);
  server = await startAppServer([env.anon.host, relay.host]);
});

afterAll(async () => {
  await server?.close();
  await relay?.close();
});

async function pullOutcome(page: E2EPage, name: string, timeout: number): Promise<'download' | 'error'> {
  await page.fill(SEL.name, name);
  await page.click(SEL.pull);
  return (await page.waitForAny([SEL.download, SEL.error], timeout)) === SEL.download ? 'download' : 'error';
}

async function open(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open(`${server.url}/?stallTimeout=${STALL_MS}`);
  await page.waitFor(SEL.name);
  // The Download-button path (streamed saves: tests/e2e/save.test.ts).
  await page.select('#save-to', 'blob');
  return page;
}

forEachEngine((engine) => {
  it('a registry that stops sending a layer fails the pull with the stage and the layer it waited for, and a retry works', async () => {
    const layers = (JSON.parse(env.fixtures.v2s2.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
    relay.stall('layers', layers);
    const page = await open(engine);
    try {
      expect(await pullOutcome(page, `${relay.host}/test/v2s2:latest`, STALL_MS * 5)).toBe('error');
    } finally {
      relay.stall('none');
    }
    expect(await page.attr(SEL.error, 'data-code')).toBe('STALLED');
    expect(await page.text(SEL.error)).toMatch(
      /No progress for 3 s while downloading layers: waiting for the bytes of layer \d\/\d \(sha256:[0-9a-f]{12}…/,
    );
    expect(await page.text(SEL.error)).toMatch(/Press Pull to try again/);
    const retried = await pullOutcome(page, `${relay.host}/test/v2s2:latest`, 45_000);
    expect(retried, `${await page.text(SEL.error)}`).toBe('download');
  });

  it('a registry that never answers the manifest fails the look-up and the pull naming the manifest', async () => {
    relay.stall('manifests');
    const page = await open(engine);
    try {
      expect(await pullOutcome(page, `${relay.host}/test/plain:latest`, STALL_MS * 5)).toBe('error');
      expect(await page.attr(SEL.error, 'data-code')).toBe('STALLED');
      expect(await page.text(SEL.error)).toMatch(
        new RegExp(`while resolving the manifest: waiting for the manifest of test/plain:latest from ${relay.host}`),
      );
    } finally {
      relay.stall('none');
    }
    const retried = await pullOutcome(page, `${relay.host}/test/plain:latest`, 45_000);
    expect(retried, `${await page.text(SEL.error)}`).toBe('download');
  });

  it("fresh pages each answer a missing name and a pull at the first try (the guard against Firefox ESR's frozen pull worker)", async () => {
    // Firefox ESR under WebDriver BiDi sometimes never returns from `new Worker()` called in a
    // worker; the pull worker used to start its layer workers itself and froze there with its
    // IndexedDB transactions open, so the pull and its retry stalled on about one fresh page in
    // 25 (README "Browser support"). The page now starts every worker (layer-host.ts). Each page
    // must answer right the first time: no STALLED.
    const pages = Number(process.env['E2E_FRESH_PAGES'] ?? 6);
    for (let i = 0; i < pages; i++) {
      const page = await open(engine);
      const name = `${env.anon.host}/nope/missing-${i}:latest`;
      expect(await pullOutcome(page, name, STALL_MS * 5)).toBe('error');
      expect(await page.attr(SEL.error, 'data-code'), (await page.text(SEL.error)) ?? '').toBe('MANIFEST_UNKNOWN');
      expect(await pullOutcome(page, `${env.anon.host}/test/plain:latest`, 45_000), (await page.text(SEL.error)) ?? '').toBe('download');
      await engine.finish(page);
    }
  }, 180_000);
});
