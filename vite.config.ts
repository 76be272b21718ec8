import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { longshoreProxy } from './src/proxy/vite-plugin.ts';

export default defineConfig({
  plugins: [svelte(), longshoreProxy()],
  worker: { format: 'es' },
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
