import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig, type ProxyConfig } from '../../src/proxy/config.ts';
import { createProxyHandler, MAX_REDIRECTS, type ProxyHandler } from '../../src/proxy/handler.ts';
import { bytes, closedPort, sha256, startFake, type FakeServer } from './fakes.ts';

const DIGEST = `sha256:${'b'.repeat(64)}`;
const BIG = bytes(8 * 1024 * 1024 + 123, 7);
const CDN_BLOB = bytes(3 * 1024 * 1024, 11);
const TOKEN = 'Bearer secret-token';

let registry: FakeServer;
let auth: FakeServer;
let cdn: FakeServer;
let mirror: FakeServer;
let config: ProxyConfig;
let handler: ProxyHandler;
/** Resolved by the test once the first bytes of the big blob reached it through the proxy. */
let firstBytesSeen: () => void = () => undefined;

function proxied(path: string, init: RequestInit = {}): Request {
  return new Request(`http://longshore.test/proxy/${path}`, init);
}

async function call(request: Request, h: ProxyHandler = handler): Promise<Response> {
  return callWith(request, h);
}

async function callWith(request: Request, h: ProxyHandler): Promise<Response> {
  const response = await h(request);
  if (!response) throw new Error(`handler declined ${request.url}`);
  return response;
}

async function envelope(response: Response): Promise<{ code: string; message: string }> {
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await response.json()) as { errors: { code: string; message: string }[] };
  expect(body.errors).toHaveLength(1);
  return body.errors[0]!;
}

beforeAll(async () => {
  auth = await startFake((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'secret-token', query: req.url }));
  });
  cdn = await startFake((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(CDN_BLOB.byteLength) });
    res.end(req.method === 'HEAD' ? undefined : CDN_BLOB);
  });
  registry = await startFake(async (req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/big/blobs/' + DIGEST) {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(BIG.byteLength),
        'docker-content-digest': await sha256(BIG),
        'set-cookie': 'tracking=1',
        'x-internal': 'no',
      });
      res.write(BIG.subarray(0, 1024 * 1024));
      // The rest only after the client saw the start: a buffering proxy would hang here.
      await new Promise<void>((resolve) => {
        firstBytesSeen = resolve;
      });
      res.end(BIG.subarray(1024 * 1024));
      return;
    }
    if (url.startsWith('/v2/private/')) {
      if (req.headers.authorization !== TOKEN) {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="${auth.origin}/token",service="fake",scope="repository:private:pull"`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      if (url.startsWith('/v2/private/blobs/')) {
        res.writeHead(307, { location: `http://localhost:${cdn.port}/cdn/blob?sig=abc` });
        res.end();
        return;
      }
      if (url.startsWith('/v2/private/manifests/')) {
        res.writeHead(200, {
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
          'docker-content-digest': DIGEST,
          etag: `"${DIGEST}"`,
          'ratelimit-limit': '100;w=21600',
          'ratelimit-remaining': '76;w=21600',
        });
        res.end('{"schemaVersion":2}');
        return;
      }
    }
    if (url === `/v2/same/blobs/${DIGEST}`) {
      res.writeHead(302, { location: '/storage/same-origin-blob' });
      res.end();
      return;
    }
    if (url === '/storage/same-origin-blob') {
      res.end('same origin');
      return;
    }
    if (url === `/v2/loop/blobs/${DIGEST}`) {
      res.writeHead(307, { location: `/v2/loop/blobs/${DIGEST}` });
      res.end();
      return;
    }
    if (url === `/v2/ftp/blobs/${DIGEST}`) {
      res.writeHead(307, { location: 'ftp://cdn.example/blob' });
      res.end();
      return;
    }
    if (url === '/v2/headers/manifests/latest') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(req.headers));
      return;
    }
    if (url === '/v2/notmodified/manifests/latest') {
      res.writeHead(304, { etag: '"x"' });
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'no such repository' }] }));
  });
  mirror = await startFake((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' });
    res.end('{"mirror":true}');
  });

  config = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    registries: [...DEFAULT_CONFIG.registries, { host: registry.host, scheme: 'http' }],
    mirrors: { 'docker.io': mirror.origin },
    allowedOrigins: ['http://app.example'],
  });
  handler = createProxyHandler(config);
});

afterAll(async () => {
  await Promise.all([registry, auth, cdn, mirror].map((s) => s?.close()));
});

describe('proxy handler', () => {
  it('declines paths outside /proxy/', async () => {
    expect(await handler(new Request('http://longshore.test/index.html'))).toBeUndefined();
    expect(await handler(new Request('http://longshore.test/proxyfoo/x'))).toBeUndefined();
  });

  it('streams a multi-MB blob through without buffering it', async () => {
    const response = await call(proxied(`${registry.host}/v2/big/blobs/${DIGEST}`));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(BIG.byteLength));
    expect(response.headers.get('docker-content-digest')).toBe(await sha256(BIG));
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(response.headers.get('x-internal')).toBeNull();
    const reader = response.body!.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total === 0) firstBytesSeen();
      chunks.push(value);
      total += value.byteLength;
    }
    expect(total).toBe(BIG.byteLength);
    expect(await sha256(Buffer.concat(chunks))).toBe(await sha256(BIG));
  }, 15_000); // a buffering proxy deadlocks here: fail soon rather than at the default timeout

  it('passes HEAD through with the length and no body', async () => {
    const response = await call(
      proxied(`${cdn.host}/v2/x/blobs/${DIGEST}`, { method: 'HEAD' }),
      createProxyHandler({
        ...config,
        registries: [...config.registries, { host: cdn.host, scheme: 'http' }],
      }),
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe(String(CDN_BLOB.byteLength));
    expect(response.body).toBeNull();
  });

  it('adds CORS headers and answers preflights itself', async () => {
    const withOrigin = await call(proxied(`${registry.host}/v2/private/manifests/latest`, { headers: { origin: 'http://app.example' } }));
    expect(withOrigin.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(withOrigin.headers.get('vary')).toMatch(/Origin/);
    const exposed = withOrigin.headers.get('access-control-expose-headers')!.split(/,\s*/);
    expect(exposed).toEqual(
      expect.arrayContaining([
        'x-longshore-www-authenticate',
        'docker-content-digest',
        'content-length',
        'content-range',
        'etag',
        'link',
        'ratelimit-limit',
        'ratelimit-remaining',
      ]),
    );
    expect(withOrigin.headers.get('access-control-allow-credentials')).toBeNull();

    // No Origin (same-origin GET, or not a browser): no CORS headers needed, none sent.
    const without = await call(proxied(`${registry.host}/v2/`));
    expect(without.headers.get('access-control-allow-origin')).toBeNull();
    // The app's own origin needs no listing.
    const own = await call(proxied(`${registry.host}/v2/`, { headers: { origin: 'http://longshore.test' } }));
    expect(own.headers.get('access-control-allow-origin')).toBe('http://longshore.test');

    const before = registry.requests.length;
    const preflight = await call(
      proxied(`${registry.host}/v2/private/manifests/latest`, {
        method: 'OPTIONS',
        headers: {
          origin: 'http://app.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization,range',
        },
      }),
    );
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/GET/);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Range/);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Accept/);
    expect(preflight.headers.get('access-control-allow-private-network')).toBeNull();
    expect(registry.requests.length).toBe(before);
  });

  it('answers Private Network Access preflights for allowed origins only', async () => {
    const pna = (origin: string) =>
      call(
        proxied(`${registry.host}/v2/private/manifests/latest`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-private-network': 'true' },
        }),
      );
    const allowed = await pna('http://app.example');
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-private-network')).toBe('true');
    const other = await pna('https://some-site.example');
    expect(other.status).toBe(403);
    expect(other.headers.get('access-control-allow-private-network')).toBeNull();
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('gives pages of other origins no CORS access and sends nothing upstream for them', async () => {
    const before = registry.requests.length;
    for (const origin of ['https://some-site.example', 'null', 'http://app.example.evil.test', 'http://longshore.test.evil.test']) {
      const response = await call(proxied(`${registry.host}/v2/private/manifests/latest`, { headers: { origin } }));
      expect(response.status, origin).toBe(403);
      expect(response.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect((await envelope(response)).message).toMatch(/allowedOrigins/);
    }
    expect(registry.requests.length).toBe(before);
  });

  it('forwards only allow-listed request headers', async () => {
    const response = await call(
      proxied(`${registry.host}/v2/headers/manifests/latest`, {
        headers: {
          accept: 'application/vnd.oci.image.index.v1+json',
          authorization: 'Bearer x',
          range: 'bytes=0-9',
          'if-none-match': '"e"',
          'user-agent': 'longshore-test',
          cookie: 'session=1',
          origin: 'http://app.example',
          referer: 'http://app.example/page',
          'x-forwarded-for': '1.2.3.4',
        },
      }),
    );
    const seen = (await response.json()) as Record<string, string>;
    expect(seen).toMatchObject({
      accept: 'application/vnd.oci.image.index.v1+json',
      authorization: 'Bearer x',
      range: 'bytes=0-9',
      'if-none-match': '"e"',
      'user-agent': 'longshore-test',
      'accept-encoding': 'identity',
      via: '1.1 longshore',
    });
    for (const name of ['cookie', 'origin', 'referer', 'x-forwarded-for']) expect(seen).not.toHaveProperty(name);
  });

  it('relays 304 without a body', async () => {
    const response = await call(proxied(`${registry.host}/v2/notmodified/manifests/latest`));
    expect(response.status).toBe(304);
    expect(response.headers.get('etag')).toBe('"x"');
  });

  it('relays WWW-Authenticate under its own header, learns the realm, then lets the token request through', async () => {
    const handler = createProxyHandler(config);
    const call = (request: Request, h: ProxyHandler = handler) => callWith(request, h);
    const realmPath = `${auth.host}/token?service=fake&scope=repository:private:pull`;
    const early = await call(proxied(realmPath));
    expect(early.status).toBe(403);
    expect((await envelope(early)).code).toBe('PROXY_DENIED');
    expect(auth.requests).toHaveLength(0);

    const challenged = await call(proxied(`${registry.host}/v2/private/manifests/latest`));
    expect(challenged.status).toBe(401);
    expect(challenged.headers.get('x-longshore-www-authenticate')).toBe(
      `Bearer realm="${auth.origin}/token",service="fake",scope="repository:private:pull"`,
    );
    // Never under its own name: a browser would open a sign-in prompt for a Basic challenge.
    expect(challenged.headers.get('www-authenticate')).toBeNull();
    expect(((await challenged.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('UNAUTHORIZED');

    const token = await call(proxied(realmPath, { headers: { authorization: 'Basic dTpw' } }));
    expect(token.status).toBe(200);
    expect(await token.json()).toEqual({ token: 'secret-token', query: '/token?service=fake&scope=repository:private:pull' });
    expect(auth.requests.at(-1)!.headers.authorization).toBe('Basic dTpw');

    const manifest = await call(proxied(`${registry.host}/v2/private/manifests/latest`, { headers: { authorization: TOKEN } }));
    expect(manifest.status).toBe(200);
    expect(manifest.headers.get('docker-content-digest')).toBe(DIGEST);
    // Docker Hub's pull limits reach the page (README, "Rate limits").
    expect(manifest.headers.get('ratelimit-limit')).toBe('100;w=21600');
    expect(manifest.headers.get('ratelimit-remaining')).toBe('76;w=21600');
    expect(await manifest.text()).toBe('{"schemaVersion":2}');

    // Learned, not configured: a fresh handler knows nothing of it.
    expect((await call(proxied(realmPath), createProxyHandler(config))).status).toBe(403);
  });

  it('follows a cross-origin blob redirect itself and never hands Authorization to the CDN', async () => {
    const registrySeen = registry.requests.length;
    const cdnSeen = cdn.requests.length;
    const response = await call(proxied(`${registry.host}/v2/private/blobs/${DIGEST}`, { headers: { authorization: TOKEN } }));
    expect(response.status).toBe(200);
    expect(response.headers.get('location')).toBeNull();
    expect(response.headers.get('content-length')).toBe(String(CDN_BLOB.byteLength));
    expect(await sha256(await response.arrayBuffer())).toBe(await sha256(CDN_BLOB));

    const toRegistry = registry.requests.slice(registrySeen);
    expect(toRegistry.map((r) => r.url)).toEqual([`/v2/private/blobs/${DIGEST}`]);
    expect(toRegistry[0]!.headers.authorization).toBe(TOKEN);
    const toCdn = cdn.requests.slice(cdnSeen);
    expect(toCdn.map((r) => r.url)).toEqual(['/cdn/blob?sig=abc']);
    expect(toCdn[0]!.headers.authorization).toBeUndefined();
    expect(toCdn[0]!.headers.host).toBe(`localhost:${cdn.port}`);
  });

  it('keeps Authorization on a same-origin redirect', async () => {
    const seen = registry.requests.length;
    const response = await call(proxied(`${registry.host}/v2/same/blobs/${DIGEST}`, { headers: { authorization: TOKEN } }));
    expect(await response.text()).toBe('same origin');
    const requests = registry.requests.slice(seen);
    expect(requests.map((r) => [r.url, r.headers.authorization])).toEqual([
      [`/v2/same/blobs/${DIGEST}`, TOKEN],
      ['/storage/same-origin-blob', TOKEN],
    ]);
  });

  it(`stops after ${MAX_REDIRECTS} redirects and refuses non-http redirects`, async () => {
    const seen = registry.requests.length;
    const loop = await call(proxied(`${registry.host}/v2/loop/blobs/${DIGEST}`));
    expect(loop.status).toBe(502);
    expect((await envelope(loop)).message).toMatch(/redirected more than 5 times/);
    expect(registry.requests.length - seen).toBe(MAX_REDIRECTS + 1);

    const ftp = await call(proxied(`${registry.host}/v2/ftp/blobs/${DIGEST}`));
    expect(ftp.status).toBe(502);
    expect((await envelope(ftp)).message).toMatch(/only http and https/);
  });

  it('refuses with the distribution error envelope', async () => {
    const unknown = await call(proxied('evil.example/v2/', { headers: { origin: 'http://app.example' } }));
    expect(unknown.status).toBe(403);
    expect(unknown.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(unknown.headers.get('x-content-type-options')).toBe('nosniff');
    const denied = await envelope(unknown);
    expect(denied.code).toBe('PROXY_DENIED');
    expect(denied.message).toMatch(/evil\.example is not a configured registry/);

    const post = await call(proxied(`${registry.host}/v2/foo/blobs/uploads/`, { method: 'POST', body: 'x' }));
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    expect((await envelope(post)).message).toMatch(/POST/);

    const notApi = await call(proxied(`${registry.host}/admin/delete-everything`));
    expect(notApi.status).toBe(404);
    expect((await envelope(notApi)).message).toMatch(/not a distribution API path/);
  });

  it('answers 502 naming the host when the upstream is down', async () => {
    const port = await closedPort();
    const down = createProxyHandler({ ...config, registries: [{ host: `127.0.0.1:${port}`, scheme: 'http' }] });
    const response = await call(proxied(`127.0.0.1:${port}/v2/`), down);
    expect(response.status).toBe(502);
    const error = await envelope(response);
    expect(error.code).toBe('PROXY_UNREACHABLE');
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  it('sends Docker Hub requests to the configured mirror', async () => {
    for (const host of ['registry-1.docker.io', 'index.docker.io', 'docker.io']) {
      const response = await call(proxied(`${host}/v2/library/alpine/manifests/latest`, { headers: { accept: 'application/json' } }));
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('{"mirror":true}');
    }
    expect(mirror.requests.map((r) => r.url)).toEqual(Array(3).fill('/v2/library/alpine/manifests/latest'));
  });
});

describe('proxy handler with injected fetch', () => {
  const publicConfig: ProxyConfig = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    listen: { host: '0.0.0.0', port: 8080 },
    registries: [{ host: 'registry.example', scheme: 'https' }],
  });

  it('refuses a host that resolves to a private address', async () => {
    const calls: string[] = [];
    const h = createProxyHandler(publicConfig, {
      fetch: async (input) => {
        calls.push(String(input));
        return new Response('nope');
      },
      lookup: async (name) => (name === 'registry.example' ? ['10.0.0.5'] : ['93.184.216.34']),
    });
    const response = await call(proxied('registry.example/v2/'), h);
    expect(response.status).toBe(403);
    expect((await envelope(response)).message).toMatch(/registry\.example resolves to 10\.0\.0\.5, a private address/);
    expect(calls).toEqual([]);
  });

  it('refuses a redirect to a name that resolves to a link-local address', async () => {
    const h = createProxyHandler(publicConfig, {
      fetch: async () => new Response(null, { status: 307, headers: { location: 'http://metadata.internal/latest' } }),
      lookup: async (name) => (name === 'metadata.internal' ? ['169.254.169.254'] : ['93.184.216.34']),
    });
    const response = await call(proxied(`registry.example/v2/x/blobs/${DIGEST}`), h);
    expect(response.status).toBe(502);
    expect((await envelope(response)).message).toMatch(/link-local/);
  });

  it('keeps a bounded set of learned realms, forgetting the oldest', async () => {
    let realm = '';
    const h = createProxyHandler(publicConfig, {
      maxLearnedRealms: 2,
      fetch: async (input) => {
        const url = new URL(String(input));
        if (url.hostname === 'registry.example') {
          return new Response(null, { status: 401, headers: { 'www-authenticate': `Bearer realm="${realm}"` } });
        }
        return new Response('{"token":"t"}', { status: 200 });
      },
    });
    for (const n of [1, 2, 3]) {
      realm = `https://auth${n}.example/token`;
      expect((await call(proxied('registry.example/v2/'), h)).status).toBe(401);
    }
    expect((await call(proxied('auth1.example/token'), h)).status).toBe(403);
    expect((await call(proxied('auth2.example/token'), h)).status).toBe(200);
    expect((await call(proxied('auth3.example/token'), h)).status).toBe(200);
  });

  it('answers 502 when the runtime hands back an unusable response', async () => {
    const h = createProxyHandler(publicConfig, { fetch: async () => Response.error() });
    const response = await call(proxied('registry.example/v2/'), h);
    expect(response.status).toBe(502);
    expect((await envelope(response)).message).toMatch(/registry\.example gave an unusable response/);
  });

  it('refuses a Content-Encoding it did not ask for instead of decoding it', async () => {
    let cancelled = false;
    const h = createProxyHandler(publicConfig, {
      fetch: async () =>
        new Response(new ReadableStream({ cancel: () => void (cancelled = true) }), {
          headers: { 'content-encoding': 'gzip', 'content-length': '3' },
        }),
    });
    const response = await call(proxied('registry.example/v2/'), h);
    expect(response.status).toBe(502);
    const error = await envelope(response);
    expect(error.code).toBe('PROXY_BAD_UPSTREAM');
    expect(error.message).toMatch(/Content-Encoding: gzip/);
    expect(cancelled).toBe(true);
  });

  it('never forwards Authorization to a mirror unless the config says so', async () => {
    const seen: (string | null)[] = [];
    const fetchSpy: typeof fetch = async (_input, init) => {
      seen.push(new Headers(init?.headers).get('authorization'));
      return new Response('{}');
    };
    const mirrored = parseConfig({ ...structuredClone(publicConfig), mirrors: { 'docker.io': 'https://mirror.example' } });
    await call(
      proxied('docker.io/v2/', { headers: { authorization: 'Bearer hub-token' } }),
      createProxyHandler(mirrored, { fetch: fetchSpy }),
    );
    const trusted = parseConfig({
      ...structuredClone(publicConfig),
      mirrors: { 'docker.io': { url: 'https://mirror.example', forwardAuthorization: true } },
    });
    await call(
      proxied('docker.io/v2/', { headers: { authorization: 'Bearer hub-token' } }),
      createProxyHandler(trusted, { fetch: fetchSpy }),
    );
    await call(
      proxied('registry.example/v2/', { headers: { authorization: 'Bearer r-token' } }),
      createProxyHandler(mirrored, { fetch: fetchSpy }),
    );
    expect(seen).toEqual([null, 'Bearer hub-token', 'Bearer r-token']);
  });

  it("learns realms only from a registry's own challenge, not from a redirect target's", async () => {
    const h = createProxyHandler(publicConfig, {
      fetch: async (input) => {
        const url = new URL(String(input));
        if (url.hostname === 'registry.example')
          return new Response(null, { status: 307, headers: { location: 'https://cdn.example/blob' } });
        if (url.hostname === 'cdn.example')
          return new Response(null, { status: 401, headers: { 'www-authenticate': 'Bearer realm="https://cdn.example/token"' } });
        return new Response('{"token":"t"}');
      },
    });
    expect((await call(proxied(`registry.example/v2/x/blobs/${DIGEST}`), h)).status).toBe(401);
    expect((await call(proxied('cdn.example/token'), h)).status).toBe(403);
  });

  it('does not learn a realm longer than the bound', async () => {
    const long = `https://auth.example/${'a'.repeat(600)}`;
    const h = createProxyHandler(publicConfig, {
      fetch: async (input) => {
        const url = new URL(String(input));
        if (url.hostname === 'registry.example')
          return new Response(null, { status: 401, headers: { 'www-authenticate': `Bearer realm="${long}"` } });
        return new Response('{"token":"t"}');
      },
    });
    expect((await call(proxied('registry.example/v2/'), h)).status).toBe(401);
    expect((await call(proxied(long.replace('https://', '')), h)).status).toBe(403);
  });

  it('marks every proxied answer nosniff and sandboxed, and adds Via', async () => {
    const h = createProxyHandler(publicConfig, {
      fetch: async () => new Response('<script>alert(document.cookie)</script>', { headers: { 'content-type': 'text/html' } }),
    });
    const response = await call(proxied('registry.example/v2/x/manifests/latest'), h);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-security-policy')).toBe("sandbox; default-src 'none'");
    expect(response.headers.get('via')).toBe('1.1 longshore');
  });

  it('answers blobs with Cache-Control: no-store whatever the registry says, so Chromium never buffers a body ahead of the reader', async () => {
    // Chromium reads a fetch body into memory as fast as it arrives (BufferingBytesConsumer) unless
    // the response says no-store: 400 MiB not yet read grew the renderer by 520 MB, and reading
    // 400 MiB cost it 2.5-6.1 s of CPU against 0.5 s with the header (README, Performance,
    // "What a byte costs here").
    const h = createProxyHandler(publicConfig, {
      fetch: async () =>
        new Response(new Uint8Array(16), {
          headers: { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=31536000, immutable' },
        }),
    });
    const response = await call(proxied(`registry.example/v2/x/blobs/${DIGEST}`), h);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    await response.arrayBuffer();
  });

  it('refuses requests that already went through this proxy, and redirects back to it', async () => {
    let upstreamCalls = 0;
    const h = createProxyHandler(publicConfig, {
      fetch: async () => {
        upstreamCalls++;
        return new Response(null, {
          status: 302,
          headers: { location: `http://longshore.test/proxy/registry.example/v2/x/blobs/${DIGEST}` },
        });
      },
    });
    const viaUs = await call(proxied('registry.example/v2/', { headers: { via: '1.1 nginx, 1.1 longshore' } }), h);
    expect(viaUs.status).toBe(508);
    expect((await envelope(viaUs)).code).toBe('PROXY_LOOP');
    expect(upstreamCalls).toBe(0);
    const loop = await call(proxied(`registry.example/v2/x/blobs/${DIGEST}`), h);
    expect(loop.status).toBe(508);
    expect((await envelope(loop)).message).toMatch(/this proxy itself/);
    expect(upstreamCalls).toBe(1);
  });
});

describe('challenge header contract', () => {
  it('the proxy and the core client agree on the relayed challenge header', async () => {
    const { CHALLENGE_HEADER } = await import('../../src/proxy/handler.ts');
    const { PROXY_CHALLENGE_HEADER } = await import('../../src/core/http/transport.ts');
    expect(CHALLENGE_HEADER).toBe(PROXY_CHALLENGE_HEADER);
  });
});

describe('per-client limits', () => {
  const limited = (limits: Partial<ProxyConfig['limits']>) =>
    parseConfig({
      ...structuredClone(DEFAULT_CONFIG),
      listen: { host: '0.0.0.0', port: 8080 },
      registries: [{ host: 'registry.example', scheme: 'https' }],
      limits: { ...DEFAULT_CONFIG.limits, ...limits },
    });

  it('answers 429 with Retry-After past the request rate, per client, and refills with time', async () => {
    let clock = 1_000_000;
    const h = createProxyHandler(limited({ clientRequestsPerSecond: 2, clientBurst: 3 }), {
      fetch: async () => new Response('{}'),
      now: () => clock,
    });
    const statuses = async (client: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await h(proxied('registry.example/v2/'), { client }))!.status);
      return out;
    };
    expect(await statuses('10.0.0.1', 4)).toEqual([200, 200, 200, 429]);
    const refused = (await h(proxied('registry.example/v2/'), { client: '10.0.0.1' }))!;
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await envelope(refused)).code).toBe('PROXY_RATE_LIMITED');
    expect(await statuses('10.0.0.2', 1)).toEqual([200]); // another client is not affected
    clock += 1000; // two tokens back
    expect(await statuses('10.0.0.1', 3)).toEqual([200, 200, 429]);
  });

  it('answers 429 past the open streams of one client, and frees a slot when a body ends', async () => {
    const h = createProxyHandler(limited({ clientStreams: 2, clientRequestsPerSecond: 0 }), {
      fetch: async () => new Response(new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(1)) }, { highWaterMark: 0 })),
    });
    const open = [
      await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'a' }),
      await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'a' }),
    ];
    expect(open.map((r) => r!.status)).toEqual([200, 200]);
    const third = (await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'a' }))!;
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'b' }))!.status).toBe(200);
    await open[0]!.body!.cancel();
    expect((await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'a' }))!.status).toBe(200);
  });

  it("counts requests still waiting on the upstream among a client's open streams", async () => {
    const h = createProxyHandler(limited({ clientStreams: 2, clientRequestsPerSecond: 0 }), {
      fetch: (_input, init) => new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason))),
    });
    const aborts = [new AbortController(), new AbortController()];
    const waiting = aborts.map((a) =>
      h(new Request('http://longshore.test/proxy/registry.example/v2/', { signal: a.signal }), { client: 'a' }),
    );
    const third = (await h(proxied('registry.example/v2/'), { client: 'a' }))!;
    expect(third.status).toBe(429);
    expect((await envelope(third)).message).toMatch(/2 requests open/);
    for (const a of aborts) a.abort();
    await Promise.all(waiting);
  });

  it('cuts a body that makes no progress for the idle bound (web relay, as on workerd)', async () => {
    const config = parseConfig({ ...structuredClone(limited({})), timeouts: { ...DEFAULT_CONFIG.timeouts, bodyIdleMs: 200 } });
    const entries: { error?: string }[] = [];
    const h = createProxyHandler(config, {
      fetch: async () => new Response(new ReadableStream({ start: (c) => c.enqueue(new Uint8Array(10)) })), // then nothing, ever
      log: (entry) => entries.push(entry),
    });
    const response = (await h(proxied(`registry.example/v2/x/blobs/${DIGEST}`), { client: 'a' }))!;
    await expect(response.arrayBuffer()).rejects.toThrow(/made no progress for 200 ms/);
    expect(entries).toMatchObject([{ error: 'body-timeout', bytes: 10, status: 200 }]);
  });

  it("bounds the wait for response headers when the runtime's fetch has no timeouts", async () => {
    const config = parseConfig({
      ...structuredClone(limited({})),
      timeouts: { connectMs: 50, headersMs: 50, bodyIdleMs: 1000, poolWaitMs: 50 },
    });
    const h = createProxyHandler(config, {
      fetch: (_input, init) => new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason))),
    });
    const response = (await h(proxied('registry.example/v2/'), { client: 'a' }))!;
    expect(response.status).toBe(504);
    expect((await envelope(response)).code).toBe('PROXY_TIMEOUT');
  });
});
