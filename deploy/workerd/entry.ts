// longshore on workerd (Cloudflare's open-source Workers runtime) or Cloudflare Workers: the
// same Fetch API handler as `npm start`, unchanged. The config comes as a JSON text binding
// (LONGSHORE_CONFIG_JSON, merged over the default like a LONGSHORE_CONFIG file); the built app,
// when an ASSETS service is bound (a workerd disk service over dist/), is served for every other
// path. Bundled by `npm run build:worker` into deploy/workerd/dist/worker.js.
import { configFrom, type ProxyConfig } from '../../src/proxy/config.ts';
import { createAppHandler, type ProxyHandler } from '../../src/proxy/handler.ts';

interface Env {
  LONGSHORE_CONFIG_JSON?: string;
  ASSETS?: { fetch(request: Request): Promise<Response> };
}

let handler: ProxyHandler | undefined;

function load(env: Env): ProxyHandler {
  const config: ProxyConfig = configFrom(JSON.parse(env.LONGSHORE_CONFIG_JSON ?? '{}'), 'LONGSHORE_CONFIG_JSON');
  // One isolate serves many requests: the learned realms and the metrics live as long as it does.
  return createAppHandler(config);
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    try {
      handler ??= load(env);
    } catch (err) {
      // A bad config: say so on every request rather than as an opaque runtime error.
      return new Response(`longshore: ${err instanceof Error ? err.message : String(err)}\n`, {
        status: 500,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
    }
    // Cloudflare puts the client's address here; a bare workerd socket has no such header.
    const client = request.headers.get('cf-connecting-ip') ?? 'unknown';
    const response = await handler(request, { client });
    if (response) return response;
    if (!env.ASSETS) return new Response('Not found\n', { status: 404 });
    const url = new URL(request.url);
    const asset = await env.ASSETS.fetch(new Request(new URL(url.pathname === '/' ? '/index.html' : url.pathname, url), request));
    // An app route (no extension) gets the app, as serve.ts does.
    if (asset.status === 404 && !/\.[a-z0-9]+$/i.test(url.pathname))
      return env.ASSETS.fetch(new Request(new URL('/index.html', url), request));
    return asset;
  },
};
