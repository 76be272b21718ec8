// Reproduces Firefox's unanswered IndexedDB request (README "Browser support"): opens N fresh
// pages (each its own user context, as the e2e driver does) of the built app, and on each looks
// up a missing name and pulls a small fixture. A page whose pull worker had to be replaced (the
// watchdog's STALLED, retried on a fresh worker) or that showed STALLED counts as a stall; with
// TRACE=1 every IndexedDB open/transaction, Web Lock and StorageManager call of the page and its
// workers is logged, and the calls a stalled page never got an answer to are printed.
//   npx vite build && node --import tsx tests/repro/firefox-idb-stall.ts [pages=40] [parallel=1]
import { startHarness, fixtureRef } from '../helpers/harness.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { firefoxEngine } from '../helpers/drivers/firefox.ts';
import { E2EPage } from '../helpers/e2e.ts';
import type { Page } from 'puppeteer-core';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tracerScript, unanswered, type TraceEntry } from './idb-trace.ts';

const pages = Number(process.argv[2] ?? 40);
const parallel = Number(process.argv[3] ?? 1);
const trace = process.env['TRACE'] === '1';
const STALL_MS = 3000;

const harness = await startHarness();
const server = await startAppServer([harness.env.anon.host]);
const dir = await mkdtemp(join(tmpdir(), 'ff-idb-stall-'));
const engine = await firefoxEngine(dir);
const SEL = {
  name: '#image-name',
  pull: 'form.pull-form button[type="submit"]',
  error: '[data-testid="error"]',
  download: '[data-testid="download"]',
};

async function pull(page: E2EPage, name: string, timeout: number): Promise<string> {
  await page.fill(SEL.name, name);
  // A DOM click: puppeteer's locator waits for animation frames, which a page in a background
  // tab (N pages at a time) may not get for a while; that is not what is measured here.
  await page.evaluate((s: string) => (document.querySelector(s) as HTMLButtonElement).click(), SEL.pull);
  const hit = await page.waitForAny([SEL.download, SEL.error], timeout);
  return hit === SEL.download ? 'download' : ((await page.attr(SEL.error, 'data-code')) ?? 'error');
}

let stalls = 0;
let done = 0;
const report: unknown[] = [];
async function one(i: number): Promise<void> {
  const driver = await engine.newPage();
  const raw = (driver as unknown as { page: Page }).page;
  await raw.evaluateOnNewDocument(tracerScript(trace));
  const page = new E2EPage('firefox', driver);
  const started = Date.now();
  let step = 'goto';
  try {
    await page.goto(`${server.url}/?stallTimeout=${STALL_MS}`);
    step = 'wait for the form';
    await page.waitFor(SEL.name);
    step = 'choose the Download button';
    await page.select('#save-to', 'blob');
    step = 'look up a missing name';
    const missing = await pull(page, `${harness.env.anon.host}/nope/missing-${i}:latest`, STALL_MS * 6);
    step = 'pull';
    const pulled = await pull(page, fixtureRef(harness.env, harness.env.anon, 'plain'), 60_000);
    step = 'read the trace';
    const log = await page.evaluate(() => (window as unknown as { __trace: TraceEntry[] }).__trace.slice());
    const pullWorkers = log.filter((e) => e.ev === 'worker' && e.detail.startsWith('longshore-pull')).length;
    const stalled = pullWorkers > 1 || missing === 'STALLED' || pulled === 'STALLED';
    if (stalled) stalls++;
    done++;
    const line = `page ${i}: missing→${missing} pull→${pulled} pull workers ${pullWorkers} ${Date.now() - started} ms${stalled ? '  <-- STALL' : ''}`;
    console.log(line);
    if (stalled) {
      console.log('  shown:', await page.text(SEL.error));
      const t0 = log[0]?.t ?? 0;
      const open = unanswered(log);
      console.log(
        '  unanswered:',
        open.map((e) => `${e.who} ${e.ev} ${e.detail} @${Math.round(e.t - t0)}ms`),
      );
      report.push({ i, missing, pulled, pullWorkers, unanswered: open, log });
    }
  } catch (err) {
    console.log(`page ${i}: harness error at "${step}" after ${Date.now() - started} ms: ${String(err).split('\n')[0]}`);
  } finally {
    await page.close().catch(() => undefined);
  }
}

let next = 0;
await Promise.all(
  Array.from({ length: parallel }, async () => {
    while (next < pages) await one(next++);
  }),
);
console.log(`[firefox idb stall] ${stalls} stalls in ${done} fresh pages (parallel ${parallel}, trace ${trace})`);
await writeFile(join(process.cwd(), 'test-results', `ff-idb-stall-${Date.now()}.json`), JSON.stringify(report, null, 1)).catch(
  () => undefined,
);
await engine.close();
await server.close();
await harness.stop();
await rm(dir, { recursive: true, force: true });
