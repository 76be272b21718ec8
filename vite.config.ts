import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { longshoreProxy } from './src/proxy/vite-plugin.ts';

export default defineConfig({
  plugins: [svelte(), longshoreProxy()],
  worker: { format: 'es' },
  // The dev server serves the service worker from its source path (src/browser/save/sw.ts), above
  // which its scope (longshore-save/) lies: allowed by this header.
  server: { headers: { 'Service-Worker-Allowed': '/' } },
  build: {
    rollupOptions: {
      // The service worker for streamed downloads (src/browser/save/sw.ts) is its own entry at a
      // fixed URL beside index.html: a service worker's scope must lie under its script's path.
      input: { main: 'index.html', 'save-sw': 'src/browser/save/sw.ts' },
      output: { entryFileNames: (chunk) => (chunk.name === 'save-sw' ? 'save-sw.js' : 'assets/[name]-[hash].js') },
    },
  },
  // Svelte's client runtime in tests, so rune classes are reactive there as in the page.
  resolve: process.env['VITEST'] ? { conditions: ['browser'] } : {},
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/global-setup.ts'],
    reporters: ['default', './tests/helpers/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
