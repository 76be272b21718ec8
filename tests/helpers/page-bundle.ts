// Bundles a browser entry module (real src/ code) with Vite into one ES module string, for a test
// to inject into a Chromium page of the app's origin (page.addScriptTag) and drive from
// page.evaluate: the real IndexedDB store, Web Locks and hash-wasm, without a UI in between.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';

export async function bundleForPage(entry: string): Promise<string> {
  const outDir = await mkdtemp(join(tmpdir(), 'longshore-bundle-'));
  try {
    await build({
      configFile: false,
      logLevel: 'silent',
      build: { outDir, emptyOutDir: true, minify: false, lib: { entry, formats: ['es'], fileName: 'bundle' } },
    });
    const file = (await readdir(outDir)).find((f) => f.endsWith('.js') || f.endsWith('.mjs'));
    if (!file) throw new Error(`no bundle for ${entry}`);
    return await readFile(join(outDir, file), 'utf8');
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}
