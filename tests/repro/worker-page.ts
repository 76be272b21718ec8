// For the repros here: a page on 127.0.0.1 in Debian's Chromium whose origin serves one worker
// script at /worker.js (so OPFS and sync access handles work as in the app's workers).
import { createServer } from 'node:http';
import { chromium, type Page } from 'playwright-core';

export async function openWorkerPage(workerCode: string, title: string): Promise<{ page: Page; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url === '/worker.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(workerCode);
    else res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>${title}</title>`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  const close = async () => {
    await browser.close();
    server.close();
  };
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    return { page, close };
  } catch (err) {
    await close();
    throw err;
  }
}
