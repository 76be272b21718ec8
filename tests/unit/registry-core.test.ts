import { describe, expect, it } from 'vitest';
import { parseChallenges, pickChallenge, challengeScopes } from '../../src/core/registry/challenge.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { fetchWithRetry, retryAfterMs, defaultRetryPolicy } from '../../src/core/http/retry.ts';
import { PROXY_ON_CUT_HEADER, proxyTransport } from '../../src/core/http/transport.ts';
import { parseManifest } from '../../src/core/image/manifest.ts';
import { matchPlatform, parsePlatform, formatPlatform, selectablePlatforms } from '../../src/core/image/platform.ts';
import { sha256, verifyingStream } from '../../src/core/digest.ts';
import { parseReference, type ImageReference } from '../../src/core/reference.ts';
import { type LongshoreError } from '../../src/core/errors.ts';
import { registryError } from '../../src/core/registry/errors.ts';
import type { Descriptor } from '../../src/core/image/model.ts';

const enc = new TextEncoder();

describe('WWW-Authenticate parsing', () => {
  it.each([
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      [
        {
          scheme: 'bearer',
          params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
        },
      ],
    ],
    [
      'Bearer realm="https://r.example/token",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"',
      [
        {
          scheme: 'bearer',
          params: { realm: 'https://r.example/token', scope: 'repository:a/b:pull,push repository:c:pull', error: 'insufficient_scope' },
        },
      ],
    ],
    ['Basic realm="Registry Realm"', [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]],
    ['basic realm=registry', [{ scheme: 'basic', params: { realm: 'registry' } }]],
    [
      'Basic realm="x", Bearer realm="https://t.example/token", service="svc"',
      [
        { scheme: 'basic', params: { realm: 'x' } },
        { scheme: 'bearer', params: { realm: 'https://t.example/token', service: 'svc' } },
      ],
    ],
    ['Bearer realm="a\\"b"', [{ scheme: 'bearer', params: { realm: 'a"b' } }]],
  ])('%s', (header, expected) => {
    expect(parseChallenges(header)).toEqual(expected);
  });

  it('prefers Bearer and splits scopes', () => {
    const c = pickChallenge(parseChallenges('Basic realm="x", Bearer realm="y",scope="repository:a:pull repository:b:pull"'))!;
    expect(c.scheme).toBe('bearer');
    expect(challengeScopes(c)).toEqual(['repository:a:pull', 'repository:b:pull']);
    expect(parseChallenges(null)).toEqual([]);
  });
});

describe('retry', () => {
  it('reads Retry-After as seconds or date', () => {
    expect(retryAfterMs('7', 0)).toBe(7000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 5_000)).toBe(5_000);
    expect(retryAfterMs(null, 0)).toBeUndefined();
    expect(retryAfterMs('soon', 0)).toBeUndefined();
  });

  it('waits as told on 429, then succeeds', async () => {
    const waits: number[] = [];
    let calls = 0;
    const res = await fetchWithRetry(
      async () => {
        calls++;
        return calls < 3 ? new Response('slow down', { status: 429, headers: { 'retry-after': '2' } }) : new Response('ok');
      },
      { ...defaultRetryPolicy, sleep: async (ms) => void waits.push(ms) },
    );
    expect(await res.text()).toBe('ok');
    expect(waits).toEqual([2000, 2000]);
  });

  it('backs off on 503 and network errors, gives up after the retries', async () => {
    const waits: number[] = [];
    let calls = 0;
    const res = await fetchWithRetry(
      async () => {
        calls++;
        if (calls === 1) throw new TypeError('fetch failed');
        return new Response('no', { status: 503 });
      },
      { ...defaultRetryPolicy, retries: 3, random: () => 0.5, sleep: async (ms) => void waits.push(ms) },
    );
    expect(res.status).toBe(503);
    expect(calls).toBe(4);
    // Equal jitter: half of 500·2^i fixed, half random (here the middle of it).
    expect(waits).toEqual([375, 750, 1500]);
  });

  it('does not retry a 404', async () => {
    let calls = 0;
    const res = await fetchWithRetry(async () => (calls++, new Response('', { status: 404 })), {
      ...defaultRetryPolicy,
      sleep: async () => {},
    });
    expect(res.status).toBe(404);
    expect(calls).toBe(1);
  });
});

describe('manifest parsing', () => {
  const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'a'.repeat(64)}`, size: 3 };
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'b'.repeat(64)}`, size: 2 };
  const bytes = (o: unknown) => enc.encode(JSON.stringify(o));

  it('takes the media type from Content-Type, ignoring parameters, else from the body, else the shape', () => {
    expect(
      parseManifest(bytes({ schemaVersion: 2, config, layers: [desc] }), 'application/vnd.oci.image.manifest.v1+json; charset=utf-8')
        .mediaType,
    ).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(parseManifest(bytes({ schemaVersion: 2, config, layers: [desc] }), null).kind).toBe('image');
    expect(parseManifest(bytes({ schemaVersion: 2, manifests: [] }), 'application/json').kind).toBe('index');
    expect(
      parseManifest(bytes({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json', manifests: [] }), '')
        .mediaType,
    ).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
  });

  it('refuses schema 1 with a clear message', () => {
    const fn = () =>
      parseManifest(bytes({ schemaVersion: 1, name: 'x', fsLayers: [] }), 'application/vnd.docker.distribution.manifest.v1+prettyjws');
    expect(fn).toThrow(/schema 1/);
    try {
      fn();
    } catch (e) {
      expect((e as LongshoreError).code).toBe('UNSUPPORTED_MANIFEST');
    }
  });

  it.each([
    [{ schemaVersion: 2, config, layers: [{ ...desc, digest: 'sha256:xyz' }] }, /Layer 1 has an invalid digest/],
    [{ schemaVersion: 2, config, layers: [{ ...desc, size: -1 }] }, /invalid size/],
    [{ schemaVersion: 2, config, layers: [{ ...desc, digest: `sha512:${'a'.repeat(128)}` }] }, /only sha256/],
    [{ schemaVersion: 2, config }, /no "layers"/],
    [{ schemaVersion: 3 }, /schemaVersion 3/],
    [{ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', config, layers: [] }, /index without/],
  ])('rejects malformed manifest %#', (body, message) => {
    expect(() => parseManifest(bytes(body), null)).toThrow(message);
  });

  it('rejects non-JSON', () => {
    expect(() => parseManifest(enc.encode('<html>'), 'text/html')).toThrow(/not valid JSON/);
  });
});

describe('platform matching', () => {
  const d = (platform?: Descriptor['platform'], annotations?: Record<string, string>): Descriptor => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${String(Math.random())
      .slice(2)
      .padEnd(64, '0')
      .slice(0, 64)
      .replace(/[^0-9]/g, '0')}`,
    size: 1,
    ...(platform ? { platform } : {}),
    ...(annotations ? { annotations } : {}),
  });
  const amd64 = d({ os: 'linux', architecture: 'amd64' });
  const arm64 = d({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  const armv7 = d({ os: 'linux', architecture: 'arm', variant: 'v7' });
  const armv6 = d({ os: 'linux', architecture: 'arm', variant: 'v6' });
  const att = d({ os: 'unknown', architecture: 'unknown' }, { 'vnd.docker.reference.type': 'attestation-manifest' });
  const all = [amd64, arm64, armv7, att];

  it.each([
    ['linux/amd64', amd64],
    ['linux/arm64', arm64],
    ['linux/arm64/v8', arm64],
    ['linux/aarch64', arm64],
    ['linux/arm/v7', armv7],
    ['linux/arm', armv7],
    ['linux/armhf', armv7],
  ])('%s', (want, expected) => {
    expect(matchPlatform(all, parsePlatform(want))).toBe(expected);
  });

  it('falls back to older arm variants, never newer', () => {
    expect(matchPlatform([amd64, armv6], parsePlatform('linux/arm/v7'))).toBe(armv6);
    expect(() => matchPlatform([amd64, armv7], parsePlatform('linux/arm/v6'))).toThrow(/No image for linux\/arm\/v6/);
  });

  it('treats children without a platform as linux/amd64', () => {
    const bare = d();
    expect(matchPlatform([bare], parsePlatform('linux/amd64'))).toBe(bare);
  });

  it('never matches attestations and lists what exists', () => {
    expect(selectablePlatforms(all).map((c) => formatPlatform(c.platform))).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    try {
      matchPlatform(all, parsePlatform('linux/s390x'));
      expect.unreachable();
    } catch (e) {
      const err = e as LongshoreError;
      expect(err.code).toBe('NO_MATCHING_PLATFORM');
      expect(err.message).toContain('linux/amd64, linux/arm64, linux/arm/v7');
      expect(err.message).not.toContain('unknown');
    }
    expect(() => matchPlatform(all, parsePlatform('unknown/unknown'))).toThrow(/No image/);
  });

  it('rejects malformed platform text', () => {
    expect(() => parsePlatform('amd64')).toThrow(/os\/architecture/);
  });
});

describe('verifying stream', () => {
  const run = async (data: Uint8Array, digest: string, size?: number) => {
    const out: Uint8Array[] = [];
    const s = new Blob([data as BlobPart]).stream().pipeThrough(verifyingStream({ digest, size, label: 'layer 1/1' }));
    for await (const c of s) out.push(c);
    return out;
  };
  it('passes good bytes', async () => {
    const data = enc.encode('hello world');
    await expect(run(data, await sha256(data), data.length)).resolves.toHaveLength(1);
  });
  it('errors on a digest mismatch instead of ending', async () => {
    const data = enc.encode('hello world');
    await expect(run(data, await sha256(enc.encode('hello there')), data.length)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });
  it('errors on size mismatch, short or long', async () => {
    const data = enc.encode('hello world');
    const digest = await sha256(data);
    await expect(run(data, digest, 5)).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
    await expect(run(data, digest, 50)).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
  });
});

/** A scripted fetch: records requests, answers from handlers keyed by URL prefix. */
function scripted(handlers: Array<(url: URL, init: RequestInit) => Response | undefined>) {
  const log: { url: string; auth: string | null }[] = [];
  const fetch = async (input: string, init: RequestInit = {}) => {
    const url = new URL(input);
    const headers = new Headers(init.headers);
    log.push({ url: input, auth: headers.get('authorization') });
    for (const h of handlers) {
      const r = h(url, init);
      if (r) return r;
    }
    return new Response('not found', { status: 404 });
  };
  return { fetch, log };
}

describe('registry client auth (scripted fetch; the real registries are in tests/integration)', () => {
  it('shares only tokens still valid, and adopting keeps whichever lasts longer', () => {
    let now = 1_000;
    const client = new RegistryClient({
      transport: { fetch: async () => new Response() },
      retry: { now: () => now, sleep: async () => {} },
    });
    client.adoptAuth([
      { registry: 'reg.example', scope: 'repository:a:pull', header: 'Bearer long', expiresAt: 50_000 },
      { registry: 'reg.example', scope: 'repository:b:pull', header: 'Bearer stale', expiresAt: 500 },
    ]);
    expect(client.shareAuth()).toEqual([{ registry: 'reg.example', scope: 'repository:a:pull', header: 'Bearer long', expiresAt: 50_000 }]);
    client.adoptAuth([{ registry: 'reg.example', scope: 'repository:a:pull', header: 'Bearer shorter', expiresAt: 20_000 }]);
    expect(client.shareAuth()[0]!.header).toBe('Bearer long');
    client.adoptAuth([{ registry: 'reg.example', scope: 'repository:a:pull', header: 'Bearer newer', expiresAt: 90_000 }]);
    expect(client.shareAuth()[0]!.header).toBe('Bearer newer');
    now = 95_000;
    expect(client.shareAuth()).toEqual([]);
  });

  it('caches tokens per scope until expires_in, then fetches a new one', async () => {
    let now = 0;
    let tokens = 0;
    const { fetch, log } = scripted([
      (u) => (u.host === 'auth.example' ? Response.json({ access_token: `t${++tokens}`, expires_in: 100 }) : undefined),
      (u, init) => {
        const auth = new Headers(init.headers).get('authorization');
        if (u.host !== 'reg.example') return undefined;
        if (auth !== `Bearer t${tokens}` || tokens === 0) {
          return new Response('{}', {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"' },
          });
        }
        return new Response('{"tags":["x"]}');
      },
    ]);
    const client = new RegistryClient({ transport: { fetch }, retry: { now: () => now, sleep: async () => {} } });
    const ref = parseReference('reg.example/a/b:x');
    expect(await getJson(client, ref)).toEqual({ tags: ['x'] });
    expect(await getJson(client, ref)).toEqual({ tags: ['x'] });
    expect(tokens).toBe(1);
    now = 95_000; // past expires_in minus the safety margin
    expect(await getJson(client, ref)).toEqual({ tags: ['x'] });
    expect(tokens).toBe(2);
    const tokenReq = log.find((l) => l.url.startsWith('https://auth.example'))!;
    expect(new URL(tokenReq.url).searchParams.getAll('scope')).toEqual(['repository:a/b:pull']);
    expect(new URL(tokenReq.url).searchParams.get('service')).toBe('reg');
  });

  it('answers one fresh challenge when a token is refused, then reports UNAUTHORIZED', async () => {
    const { fetch, log } = scripted([
      (u) => (u.host === 'auth.example' ? Response.json({ token: 'nope' }) : undefined),
      (u) =>
        u.host === 'reg.example'
          ? new Response('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', {
              status: 401,
              headers: { 'www-authenticate': 'Bearer realm="https://auth.example/token",service="reg"' },
            })
          : undefined,
    ]);
    const client = new RegistryClient({ transport: { fetch }, retry: { sleep: async () => {} } });
    await expect(client.getManifest(parseReference('reg.example/a/b'))).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect(log.filter((l) => l.url.startsWith('https://reg.example')).length).toBe(2);
  });

  it('sends credentials to the realm over https but never to a redirect target on another origin', async () => {
    const layer = enc.encode('layer-bytes');
    const digest = await sha256(layer);
    const { fetch, log } = scripted([
      (u) => (u.host === 'auth.example' ? Response.json({ token: 'tok' }) : undefined),
      (u) => (u.host === 'cdn.example' ? new Response(layer as BodyInit) : undefined),
      (u, init) => {
        if (u.host !== 'reg.example') return undefined;
        if (new Headers(init.headers).get('authorization') !== 'Bearer tok') {
          return new Response('', {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="https://auth.example/token",service="reg"' },
          });
        }
        return new Response(null, { status: 307, headers: { location: 'https://cdn.example/blob?sig=1' } });
      },
    ]);
    const client = new RegistryClient({
      transport: { fetch },
      credentials: (r) => (r === 'reg.example' ? { username: 'u', password: 'p' } : undefined),
    });
    const stream = await client.openBlob(parseReference('reg.example/a/b'), { mediaType: 'x', digest, size: layer.length });
    expect(new Uint8Array(await new Response(stream).arrayBuffer())).toEqual(layer);
    expect(log.find((l) => l.url.startsWith('https://auth.example'))!.auth).toMatch(/^Basic /);
    expect(log.find((l) => l.url.startsWith('https://cdn.example'))!.auth).toBeNull();
  });

  it('does not send credentials to a plain-http realm on another public host', async () => {
    const { fetch, log } = scripted([
      (u) => (u.host === 'auth.example' ? Response.json({ token: 'tok' }) : undefined),
      (u, init) =>
        u.host === 'reg.example'
          ? new Headers(init.headers).get('authorization') === 'Bearer tok'
            ? new Response('{"tags":[]}')
            : new Response('', { status: 401, headers: { 'www-authenticate': 'Bearer realm="http://auth.example/token"' } })
          : undefined,
    ]);
    const client = new RegistryClient({ transport: { fetch }, credentials: () => ({ username: 'u', password: 'p' }) });
    await getJson(client, parseReference('reg.example/a'));
    expect(log.find((l) => l.url.startsWith('http://auth.example'))!.auth).toBeNull();
  });

  it('checks the manifest body against Docker-Content-Digest', async () => {
    const body = enc.encode('{"schemaVersion":2}');
    const { fetch } = scripted([
      (u) =>
        u.host === 'reg.example'
          ? new Response(body as BodyInit, { headers: { 'docker-content-digest': `sha256:${'0'.repeat(64)}` } })
          : undefined,
    ]);
    const client = new RegistryClient({ transport: { fetch }, retry: { sleep: async () => {} } });
    await expect(client.getManifest(parseReference('reg.example/a:b'))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('caps manifest size', async () => {
    const { fetch } = scripted([(u) => (u.host === 'reg.example' ? new Response(new Uint8Array(5 * 1024 * 1024) as BodyInit) : undefined)]);
    const client = new RegistryClient({ transport: { fetch } });
    await expect(client.getManifest(parseReference('reg.example/a:b'))).rejects.toMatchObject({ code: 'TOO_LARGE' });
  });
});

describe('through the proxy (proxyTransport)', () => {
  it("asks for a clean end on a cut only with the resumable engine's blob requests, never a manifest's", async () => {
    const seen: { path: string; onCut: string | null; range: string | null }[] = [];
    const fetch = async (input: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      seen.push({ path: new URL(input).pathname, onCut: headers.get(PROXY_ON_CUT_HEADER), range: headers.get('range') });
      return new Response('{}');
    };
    const client = new RegistryClient({ transport: proxyTransport(fetch, 'http://app.example/'), retry: { sleep: async () => {} } });
    const ref = parseReference('reg.example/a:b');
    await client.getManifest(ref).catch(() => undefined);
    const sender = client.blobSender(ref, { mediaType: 'application/octet-stream', digest: `sha256:${'1'.repeat(64)}`, size: 10 });
    await (await sender.send(undefined, undefined)).text();
    await (await sender.send({ start: 4 }, undefined)).text();
    expect(seen).toEqual([
      { path: '/proxy/reg.example/v2/a/manifests/b', onCut: null, range: null },
      { path: `/proxy/reg.example/v2/a/blobs/sha256:${'1'.repeat(64)}`, onCut: 'end', range: null },
      { path: `/proxy/reg.example/v2/a/blobs/sha256:${'1'.repeat(64)}`, onCut: 'end', range: 'bytes=4-' },
    ]);
  });

  it('the proxy and the core client agree on the header', async () => {
    const { ON_CUT_HEADER } = await import('../../src/proxy/handler.ts');
    expect(ON_CUT_HEADER).toBe(PROXY_ON_CUT_HEADER);
  });
});

/** An authenticated GET of the repository's tag list, through the client's challenge handling. */
async function getJson(client: RegistryClient, ref: ImageReference): Promise<unknown> {
  const response = await client.request(ref.apiHost, `/v2/${ref.repository}/tags/list`, `repository:${ref.repository}:pull`);
  return response.json();
}

describe('registry error mapping', () => {
  const ctx = { what: 'manifest r.example/a:b', registry: 'r.example', repository: 'a' };
  it.each([
    [404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }, 'MANIFEST_UNKNOWN', false],
    [401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, 'UNAUTHORIZED', false],
    [429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, 'TOOMANYREQUESTS', true],
    [403, { errors: [{ code: 'PROXY_DENIED', message: 'evil is not configured' }] }, 'PROXY_DENIED', false],
    [502, { errors: [{ code: 'PROXY_UNREACHABLE', message: 'r.example unreachable' }] }, 'PROXY_UNREACHABLE', true],
    [508, { errors: [{ code: 'PROXY_LOOP', message: 'loop' }] }, 'PROXY_LOOP', false],
    [429, { errors: [{ code: 'PROXY_RATE_LIMITED', message: 'too many' }] }, 'PROXY_RATE_LIMITED', true],
    [503, { errors: [{ code: 'PROXY_BUSY', message: 'no connection' }] }, 'PROXY_BUSY', true],
    [504, { errors: [{ code: 'PROXY_TIMEOUT', message: 'slow' }] }, 'PROXY_TIMEOUT', true],
    [502, { errors: [{ code: 'PROXY_BAD_UPSTREAM', message: 'status 600' }] }, 'PROXY_BAD_UPSTREAM', true],
    [500, { errors: [{ code: 'PROXY_INTERNAL', message: 'bug' }] }, 'PROXY_INTERNAL', true],
    [400, { errors: [{ code: 'SOMETHING_NEW', message: '?' }] }, 'REGISTRY', false],
    [404, 'plain text', 'MANIFEST_UNKNOWN', false],
    [500, '', 'HTTP', true],
  ])('%i %j → %s', async (status, body, code, retryable) => {
    const e = await registryError(new Response(typeof body === 'string' ? body : JSON.stringify(body), { status }), ctx);
    expect(e.code).toBe(code);
    expect(e.retryable).toBe(retryable);
    expect(e.hint).toBeTruthy();
    expect(e.message).toContain('manifest r.example/a:b');
  });
});
