// Parallel ranges, measured: one image with one big layer behind a relay that caps each
// connection's rate (tests/helpers/cut-relay.ts) in front of the token registry with redirected
// blobs; the core pull with 1, 2, 4, 8 ranges, in Node (MemoryBlobStore) or with --browser in
// headless Chromium (the real IndexedDB store, through the real server's proxy; needs dist/).
// Prints wall times.
//   node --import tsx tests/bench/parallel-ranges.ts [--mb 100] [--rate 20] [--rounds 2] [--browser]
import { parseArgs } from 'node:util';
import { startHarness } from '../helpers/harness.ts';
import { pushBigImage } from '../helpers/big-image.ts';
import { startCutRelay } from '../helpers/cut-relay.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { bundleForPage } from '../helpers/page-bundle.ts';
import type { StorePageApi } from '../e2e/pages/store-page.ts';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '100' },
    rate: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '2' },
    browser: { type: 'boolean', default: false },
    ranges: { type: 'string', default: '1,2,4,8' },
  },
});
const MB = 1_000_000;
const harness = await startHarness();
try {
  const image = await pushBigImage(harness.env, 'bench/ranges', [Number(values.mb) * MB]);
  const relay = await startCutRelay(harness.env.token.url, { bytesPerSecond: Number(values.rate) * MB });
  const name = `${relay.host}/${image.path}`;
  const results: Record<number, number[]> = {};
  let runOnce: (n: number) => Promise<void>;
  let cleanup = async () => undefined as void;
  if (values.browser) {
    const server = await startAppServer([relay.host], { tokenRealms: [harness.env.tokenServer.realm] });
    const browser = await launchChromium();
    const bundle = await bundleForPage(new URL('../e2e/pages/store-page.ts', import.meta.url).pathname);
    cleanup = async () => {
      await browser.close();
      await server.close();
    };
    runOnce = async (n) => {
      const page = await (await browser.newContext()).newPage();
      await page.goto(server.url);
      await page.addScriptTag({ content: bundle, type: 'module' });
      await page.waitForFunction(() => 'longshoreTest' in globalThis);
      await page.evaluate(
        async ([ref, connections]) => {
          const t = (globalThis as unknown as { longshoreTest: StorePageApi }).longshoreTest;
          await t.pullHere(ref, new t.IdbBlobStore(`bench-${Date.now()}`), connections > 1 ? { connections, threshold: 0 } : undefined);
        },
        [name, n] as const,
      );
      await page.context().close();
    };
  } else {
    runOnce = async (n) => {
      const client = new RegistryClient({ transport: { fetch: (i, init) => globalThis.fetch(i, init) } });
      await pull(new RemoteSource(client), parseReference(name), {
        store: new MemoryBlobStore(),
        ...(n > 1 ? { parallel: { connections: n, threshold: 0 } } : {}),
      });
    };
  }
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const n of values.ranges!.split(',').map(Number)) {
      const started = performance.now();
      await runOnce(n);
      (results[n] ??= []).push((performance.now() - started) / 1000);
    }
  }
  await cleanup();
  const size = image.layers[0]!.size / MB;
  console.log(
    `${values.browser ? 'Chromium, IdbBlobStore' : 'Node, MemoryBlobStore'}: layer ${size.toFixed(1)} MB, ${values.rate} MB/s per connection, ${values.rounds} round(s)`,
  );
  for (const [n, times] of Object.entries(results)) {
    const best = Math.min(...times);
    console.log(
      `ranges ${n}: ${times.map((t) => t.toFixed(2)).join(' / ')} s (best ${best.toFixed(2)} s, ${(size / best).toFixed(1)} MB/s)`,
    );
  }
  await relay.close();
} finally {
  await harness.stop();
}
