// Fresh Firefox pages, each starting a module worker that starts nested module workers (optionally
// right after opening IndexedDB): counts pages where the outer worker never got past a step.
//   node --import tsx tests/repro/nested-worker.ts pages parallel 'idb=1&n=2'
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import puppeteer from 'puppeteer-core';
import { FIREFOX_PATH, firefoxEngine } from '../helpers/drivers/firefox.ts';

const [pages = '40', parallel = '1', query = 'idb=1&n=2'] = process.argv.slice(2);
const dir = join(import.meta.dirname, 'nested');
const results: unknown[] = [];
const server = createServer((req, res) => {
  if (req.method === 'POST') {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      results.push(JSON.parse(body));
      console.log('result', body);
      res.end();
    });
    return;
  }
  const path = new URL(req.url!, 'http://x').pathname;
  readFile(join(dir, path === '/' ? 'index.html' : path)).then(
    (b) => res.writeHead(200, { 'content-type': path.endsWith('.js') ? 'text/javascript' : 'text/html' }).end(b),
    () => res.writeHead(404).end(),
  );
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
if (process.env['SERVE_ONLY']) {
  console.log(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
  await new Promise((r) => setTimeout(r, Number(process.env['SERVE_ONLY']) * 1000));
  process.exit(0);
}
const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/?${query}`;
const engine = await firefoxEngine(await mkdtemp(join(tmpdir(), 'nested-')));
if (process.env['DISCONNECT']) {
  // The same browser and profile as over BiDi, but the WebDriver session ends before the rounds start.
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX_PATH, headless: true });
  const page = await browser.newPage();
  await page.goto(url.replace('/?', '/loop.html?') + '&delay=5000');
  const proc = browser.process();
  await browser.disconnect();
  while (!results.length) await new Promise((r) => setTimeout(r, 500));
  proc?.kill();
  server.close();
  process.exit(0);
}
if (process.env['LOOP']) {
  // One page, many rounds (loop.html), driven over BiDi like the rest.
  const page = await engine.newPage();
  await page.goto(url.replace('/?', '/loop.html?'));
  while (!results.length) await new Promise((r) => setTimeout(r, 500));
  await engine.close();
  server.close();
  process.exit(0);
}
const n = Number(new URLSearchParams(query).get('n') ?? 2);
let hung = 0;
let next = 0;
await Promise.all(
  Array.from({ length: Number(parallel) }, async () => {
    while (next < Number(pages)) {
      const i = next++;
      const page = await engine.newPage().catch(() => undefined);
      if (!page) {
        console.log(`page ${i}: harness could not open a page`);
        continue;
      }
      await page.goto(url);
      const deadline = Date.now() + 8000;
      let log: string[] = [];
      while (Date.now() < deadline) {
        log = await page.evaluate<string[]>('(() => window.__log.slice())', []);
        if (log.some((l) => l.endsWith('all created')) && log.filter((l) => / hello /.test(l)).length === n) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const ok = log.some((l) => l.endsWith('all created')) && log.filter((l) => / hello /.test(l)).length === n;
      if (!ok) hung++;
      console.log(`page ${i}: ${ok ? 'ok' : 'HUNG'} ${ok ? '' : log.join(' | ')}`);
      await page.close();
    }
  }),
);
console.log(`[nested] ${hung} hung of ${pages} (parallel ${parallel}, ${query})`);
await engine.close();
server.close();
