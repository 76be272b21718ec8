// The longshore server (built app + proxy) started in-process for end-to-end tests, with a config
// that reaches the loopback test registries and mirrors docker.io to the anonymous one.
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { parseConfig, type ProxyConfig } from '../../src/proxy/config.ts';
import { startServer, type RunningServer } from '../../src/proxy/serve.ts';

export const DIST_DIR = resolve(import.meta.dirname, '../../dist');

export async function startAppServer(registryHosts: string[], overrides: Partial<Record<string, unknown>> = {}): Promise<RunningServer> {
  if (!existsSync(resolve(DIST_DIR, 'index.html'))) throw new Error('dist/ is missing: run `vite build` first (npm test does).');
  const config: ProxyConfig = parseConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      registries: registryHosts.map((host) => ({ host, scheme: 'http' })),
      mirrors: {},
      tokenRealms: [],
      allowLoopback: true,
      ...overrides,
    },
    'e2e config',
  );
  return startServer(config, { staticDir: DIST_DIR });
}
