// Accessibility in every engine: axe-core (WCAG 2.x A/AA) finds nothing on each state of the page
// (empty, typing, pulling, ready, error, browsing), and a pull and a browse work by keyboard alone.
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { forEachEngine, type E2EPage } from '../helpers/e2e.ts';
import { axeViolations } from '../helpers/axe.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
let slow: SlowProxy;

beforeAll(async () => {
  slow = await startSlowProxy(env.anon.url);
  server = await startAppServer([env.anon.host, slow.host], { mirrors: { 'docker.io': env.anon.url } });
});

afterAll(async () => {
  await server?.close();
  await slow?.close();
});

async function expectClean(page: E2EPage, state: string): Promise<void> {
  expect(await axeViolations(page), `${page.engine}, state "${state}"`).toEqual([]);
}

forEachEngine((engine) => {
  it('axe finds no violation on the empty, typing, pulling, error, ready and browsing states', async () => {
    const page = await engine.open(server.url);
    await page.waitFor('#image-name');
    // The Download-button path (streamed saves: tests/e2e/save.test.ts).
    await page.select('#save-to', 'blob');
    await expectClean(page, 'empty');
    await page.fill('#image-name', 'Alpine');
    await expect.poll(() => page.text('[data-testid="name-help"]')).toMatch(/lowercase/);
    await expectClean(page, 'typing');
    await page.fill('#image-name', `${slow.host}/test/v2s2:latest`);
    await page.click('form.pull-form button[type="submit"]');
    await expect.poll(() => page.attr('[data-testid="status"]', 'data-status'), { timeout: 20_000 }).toBe('downloading');
    await expectClean(page, 'pulling');
    await page.click('form.pull-form .actions button.secondary');
    await page.fill('#image-name', `${env.anon.host}/test/v2s2:does-not-exist`);
    await page.click('form.pull-form button[type="submit"]');
    await page.waitFor('[data-testid="error"]');
    await expectClean(page, 'error');
    await page.fill('#image-name', 'test/fs:latest');
    await page.click('form.pull-form button[type="submit"]');
    await page.waitFor('[data-testid="download"]', { timeout: 45_000 });
    await expectClean(page, 'ready');
    await page.click('[data-testid="browse-pulled"]');
    await page.waitFor('[data-testid="entry-row"]', { timeout: 45_000 });
    await expectClean(page, 'browsing');
  });

  it('pulls and browses by keyboard alone', async () => {
    const page = await engine.open(server.url);
    await page.waitFor('#image-name');
    // The Download-button path (streamed saves: tests/e2e/save.test.ts).
    await page.select('#save-to', 'blob');
    await page.tabTo('#image-name');
    await page.type('test/fs:latest');
    await page.tabTo('form.pull-form button[type="submit"]:not([disabled])');
    await page.press('Enter');
    await page.waitFor('[data-testid="download"]', { timeout: 45_000 });
    // Pressing Pull disabled it; when the pull ends the keyboard is on Download, the next step.
    await expect.poll(() => page.focused()).toBe('download');
    const download = await page.driver.download(() => page.press('Enter'), 45_000);
    expect(download.name).toBe('test_fs_latest.tar');
    await page.tabTo('[data-testid="browse-pulled"]');
    await page.press('Enter');
    await page.waitFor('[data-testid="inspected-image"]', { timeout: 45_000 });
    await expect.poll(() => page.focused()).toBe('inspected-image');
    await page.waitFor('[data-testid="entry-row"]', { timeout: 45_000 });
    await page.tabTo('[data-testid="entry-rows"]');
    const first = await page.attr('[data-testid="entry-row"][aria-selected="true"]', 'data-path');
    await page.press('ArrowDown');
    await expect.poll(() => page.attr('[data-testid="entry-row"][aria-selected="true"]', 'data-path')).not.toBe(first);
  });
});
