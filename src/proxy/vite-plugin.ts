// Mounts the CORS proxy (and /config.json) in `vite` dev and `vite preview`, so development
// uses the same handler as `npm start`. The loopback rule follows the host Vite listens on.
import { lookup } from 'node:dns/promises';
import type { Plugin, PreviewServer, ViteDevServer } from 'vite';
import { loadConfig, parseConfig, type ProxyConfig } from './config.ts';
import { createAppHandler } from './handler.ts';
import { createNodeFetch, nodeRelay } from './node-fetch.ts';
import { nodeMiddleware } from './node-http.ts';

export interface LongshoreProxyOptions {
  /** A ready config; by default it is loaded like `npm start` does (default + LONGSHORE_*). */
  config?: ProxyConfig;
}

export function longshoreProxy(options: LongshoreProxyOptions = {}): Plugin {
  const mount = async (server: ViteDevServer | PreviewServer, host: string | boolean | undefined) => {
    // Vitest starts a Vite server too; its tests mount the handler themselves.
    if (process.env['VITEST']) return;
    const base = options.config ?? (await loadConfig());
    // `allowLoopback: "auto"` must judge the address Vite really listens on, not listen.host.
    const listenHost = host === true ? '0.0.0.0' : host === false || host === undefined ? 'localhost' : host;
    const config = parseConfig({ ...base, listen: { ...base.listen, host: listenHost } }, 'vite');
    const handler = createAppHandler(config, {
      lookup: async (name) => (await lookup(name, { all: true })).map((a) => a.address),
      fetch: createNodeFetch(config),
      relay: nodeRelay,
      fetchBounded: true,
    });
    server.middlewares.use(nodeMiddleware(handler, { trustForwardedFor: config.trustForwardedFor }));
  };
  return {
    name: 'longshore-proxy',
    async configureServer(server) {
      await mount(server, server.config.server.host);
    },
    async configurePreviewServer(server) {
      await mount(server, server.config.preview.host);
    },
  };
}
