import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PreviewServer, ViteDevServer } from 'vite';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_CONFIG, parseConfig } from '../../src/proxy/config.ts';
import type { Middleware } from '../../src/proxy/node-http.ts';
import { longshoreProxy } from '../../src/proxy/vite-plugin.ts';

const config = parseConfig({
  ...structuredClone(DEFAULT_CONFIG),
  registries: [...DEFAULT_CONFIG.registries, { host: '127.0.0.1:5000', scheme: 'http' }],
});

/** Just enough of a Vite server for the plugin: its host setting and a middleware stack. */
function fakeVite(host: string | boolean | undefined) {
  const stack: Middleware[] = [];
  const server = {
    config: { server: { host }, preview: { host } },
    middlewares: { use: (fn: Middleware) => stack.push(fn) },
  };
  return { server, stack };
}

let http: Server | undefined;
afterEach(async () => {
  vi.unstubAllEnvs();
  http?.closeAllConnections();
  await new Promise<void>((resolve) => (http ? http.close(() => resolve()) : resolve()));
  http = undefined;
});

async function serve(middleware: Middleware): Promise<string> {
  http = createServer((req, res) =>
    middleware(req, res, () => {
      res.writeHead(418);
      res.end('next');
    }),
  );
  await new Promise<void>((resolve) => http!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
}

describe('longshoreProxy (Vite plugin)', () => {
  it('mounts the proxy and /config.json as middleware, passing other paths on', async () => {
    vi.stubEnv('VITEST', '');
    const plugin = longshoreProxy({ config });
    const { server, stack } = fakeVite(undefined);
    await (plugin.configureServer as (s: ViteDevServer) => Promise<void>)(server as unknown as ViteDevServer);
    expect(stack).toHaveLength(1);
    const base = await serve(stack[0]!);
    const pub = (await (await fetch(new URL('config.json', base))).json()) as { registries: string[] };
    expect(pub.registries).toContain('127.0.0.1:5000');
    const denied = await fetch(new URL('proxy/evil.example/v2/', base));
    expect(denied.status).toBe(403);
    expect((await fetch(new URL('src/main.ts', base))).status).toBe(418);
  });

  it('judges "auto" loopback by the host Vite listens on', async () => {
    vi.stubEnv('VITEST', '');
    const plugin = longshoreProxy({ config });
    const { server } = fakeVite(true);
    await expect(
      (plugin.configurePreviewServer as (s: PreviewServer) => Promise<void>)(server as unknown as PreviewServer),
    ).rejects.toThrow(/registry 127\.0\.0\.1:5000 is a loopback address but the server listens on 0\.0\.0\.0/);
  });
});
