// The page a person meets, in every engine: nothing it asks for 404s (icon and web app manifest
// are served from public/), and screenshots at 360 px and at a wide size are kept under
// test-results/e2e/ (gitignored) for a person to look at.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { ARTIFACTS_DIR, forEachEngine } from '../helpers/e2e.ts';
import { startAppServer } from '../helpers/app-server.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
let front: Server;
let frontUrl = '';
const answered: { path: string; status: number }[] = [];

beforeAll(async () => {
  server = await startAppServer([env.anon.host], { mirrors: { 'docker.io': env.anon.url } });
  // A logging relay in front of the app: every request the page (and its workers) make, with its status.
  front = createServer((req, res) => {
    const up = new URL(server.url);
    const r = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      answered.push({ path: req.url ?? '', status: upRes.statusCode ?? 0 });
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    r.on('error', () => res.destroy());
    req.pipe(r);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
});

afterAll(async () => {
  front?.closeAllConnections();
  await new Promise((r) => front?.close(r));
  await server?.close();
});

forEachEngine((engine) => {
  it('asks for nothing that 404s, and lays out at 360 px and wide (screenshots kept)', async () => {
    answered.length = 0;
    const page = await engine.open(`${frontUrl}/`, { width: 1400, height: 1000 });
    await page.waitFor('#image-name');
    // The Download-button path (streamed saves: tests/e2e/save.test.ts).
    await page.select('#save-to', 'blob');
    await page.fill('#image-name', 'test/v2s2:latest');
    await page.click('form.pull-form button[type="submit"]');
    await page.waitForAny(['[data-testid="download"]', '[data-testid="error"]'], 45_000);
    expect(await page.count('[data-testid="error"]')).toBe(0);
    await page.screenshot(join(ARTIFACTS_DIR, `${engine.name}-wide.png`));
    await page.setViewport(360, 800);
    // Nothing wider than the screen: no sideways scrolling on a phone.
    await expect.poll(() => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1)).toBe(true);
    await page.screenshot(join(ARTIFACTS_DIR, `${engine.name}-360.png`));
    const pageAssets = answered.filter((a) => !a.path.startsWith('/proxy/'));
    expect(pageAssets.filter((a) => a.status >= 400)).toEqual([]);
    // What index.html links (headless engines fetch the manifest only when installing) is served.
    const linked = await page.attrs('link[rel="icon"], link[rel="manifest"]', 'href');
    expect(linked).toEqual(['/icon.svg', '/manifest.webmanifest']);
    for (const href of linked) expect((await fetch(`${frontUrl}${href}`)).status, href!).toBe(200);
  });
});

forEachEngine((engine) => {
  it('says what this browser can do', async () => {
    const page = await engine.open(`${frontUrl}/`);
    await page.waitFor('[data-testid="browser-support"] li[data-capability="cache"]');
    expect(await page.count('[data-testid="browser-support"] li')).toBe(7);
    if (engine.name === 'chromium') expect(await page.attr('li[data-capability="staging"]', 'data-ok')).toBe('true');
    // WebKit under WebDriver is an ephemeral session: IndexedDB refuses Blobs there (see README).
    expect(await page.attr('li[data-capability="cache"]', 'data-ok')).toBe(engine.name === 'webkit' ? 'false' : 'true');
    expect(await page.attr('li[data-capability="workers"]', 'data-ok')).toBe('true');
    expect(await page.text('li[data-capability="save"]')).toMatch(
      // Chromium: the picked file; the others: the service worker's download (tests/e2e/save.test.ts).
      engine.name === 'chromium'
        ? /save while pulling, straight into a file you pick/
        : /Saves while pulling, into your downloads \(a service worker/,
    );
  });
});
