import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig, type ProxyConfig } from '../../src/proxy/config.ts';
import { classifyHost } from '../../src/core/net/destination.ts';
import {
  carriesOurVia,
  corsAccess,
  decide,
  decideRedirect,
  distributionPath,
  learnableRealm,
  mayLearnFrom,
  selfAuthorities,
} from '../../src/proxy/policy.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

/** Listens on loopback (so loopback upstreams are allowed under "auto"), with local extras. */
const local: ProxyConfig = parseConfig({
  ...structuredClone(DEFAULT_CONFIG),
  registries: [...DEFAULT_CONFIG.registries, { host: '127.0.0.1:5000', scheme: 'http' }, { host: 'localhost:5001', scheme: 'http' }],
  mirrors: { 'docker.io': 'http://127.0.0.1:5002', 'quay.io': 'https://quay-mirror.example' },
});

/** Listens on all interfaces: loopback/private upstreams refused under "auto". */
const publicListen: ProxyConfig = parseConfig({ ...structuredClone(DEFAULT_CONFIG), listen: { host: '0.0.0.0', port: 8080 } });

/** Not validated (parseConfig would refuse it): proves the policy checks destinations itself. */
const publicWithLoopbackRegistry: ProxyConfig = {
  ...publicListen,
  registries: [...publicListen.registries, { host: '127.0.0.1:5000', scheme: 'http' }, { host: '10.1.2.3', scheme: 'https' }],
  tokenRealms: [...publicListen.tokenRealms, 'http://169.254.169.254/latest'],
};
const publicAllowLoopback: ProxyConfig = { ...publicWithLoopbackRegistry, allowLoopback: true };
const loopbackDenied: ProxyConfig = { ...local, allowLoopback: false };

const noneLearned: ReadonlySet<string> = new Set();
const learned: ReadonlySet<string> = new Set(['https://auth.learned.example/oauth/token', 'http://127.0.0.1:9000/token']);

type Expect =
  { kind: 'registry' | 'realm' | 'preflight'; upstream?: string; forwardAuthorization?: boolean } | { status: number; reason?: RegExp };

interface Row {
  what: string;
  method?: string;
  path: string;
  query?: string;
  headers?: Record<string, string>;
  config?: ProxyConfig;
  learned?: ReadonlySet<string>;
  self?: string[];
  expect: Expect;
}

const rows: Row[] = [
  // methods
  {
    what: 'GET manifest on Docker Hub',
    path: '/proxy/registry-1.docker.io/v2/library/alpine/manifests/latest',
    config: publicListen,
    expect: { kind: 'registry', upstream: 'https://registry-1.docker.io/v2/library/alpine/manifests/latest' },
  },
  {
    what: 'HEAD manifest by digest',
    method: 'HEAD',
    path: `/proxy/ghcr.io/v2/foo/bar/manifests/${DIGEST}`,
    expect: { kind: 'registry', upstream: `https://ghcr.io/v2/foo/bar/manifests/${DIGEST}` },
  },
  { what: 'POST is refused', method: 'POST', path: '/proxy/ghcr.io/v2/foo/blobs/uploads/', expect: { status: 405, reason: /POST/ } },
  { what: 'PUT is refused', method: 'PUT', path: '/proxy/ghcr.io/v2/foo/manifests/latest', expect: { status: 405 } },
  { what: 'DELETE is refused', method: 'DELETE', path: `/proxy/ghcr.io/v2/foo/blobs/${DIGEST}`, expect: { status: 405 } },
  {
    what: 'preflight for GET',
    method: 'OPTIONS',
    path: '/proxy/ghcr.io/v2/foo/manifests/latest',
    headers: { 'Access-Control-Request-Method': 'GET' },
    expect: { kind: 'preflight' },
  },
  {
    what: 'preflight for PUT is refused',
    method: 'OPTIONS',
    path: '/proxy/ghcr.io/v2/foo/manifests/latest',
    headers: { 'access-control-request-method': 'PUT' },
    expect: { status: 405 },
  },
  // distribution API paths
  {
    what: 'API version check /v2/',
    path: '/proxy/quay.io/v2/',
    config: publicListen,
    expect: { kind: 'registry', upstream: 'https://quay.io/v2/' },
  },
  { what: '/v2 without slash', path: '/proxy/gcr.io/v2', expect: { kind: 'registry', upstream: 'https://gcr.io/v2/' } },
  {
    what: 'blob by digest',
    path: `/proxy/ghcr.io/v2/a/b/c/blobs/${DIGEST}`,
    expect: { kind: 'registry', upstream: `https://ghcr.io/v2/a/b/c/blobs/${DIGEST}` },
  },
  {
    what: 'tags/list keeps its query',
    path: '/proxy/ghcr.io/v2/foo/tags/list',
    query: '?n=10&last=v1',
    expect: { kind: 'registry', upstream: 'https://ghcr.io/v2/foo/tags/list?n=10&last=v1' },
  },
  {
    what: '_catalog',
    path: '/proxy/127.0.0.1:5000/v2/_catalog',
    query: 'n=5',
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5000/v2/_catalog?n=5' },
  },
  { what: 'blob by tag is refused', path: '/proxy/ghcr.io/v2/foo/blobs/latest', expect: { status: 404, reason: /not a digest/ } },
  {
    what: 'upper-case repository name',
    path: '/proxy/ghcr.io/v2/Foo/manifests/latest',
    expect: { status: 404, reason: /repository name/ },
  },
  { what: 'bad tag', path: '/proxy/ghcr.io/v2/foo/manifests/-bad', expect: { status: 404, reason: /neither a tag nor a digest/ } },
  { what: 'upload endpoint', path: '/proxy/ghcr.io/v2/foo/blobs/uploads/', expect: { status: 404 } },
  { what: 'non-API path on a registry', path: '/proxy/ghcr.io/login', expect: { status: 404, reason: /start with \/v2\// } },
  { what: 'unknown verb', path: '/proxy/ghcr.io/v2/foo/referrers/x', expect: { status: 404 } },
  { what: 'no path after the host', path: '/proxy/ghcr.io', expect: { status: 404 } },
  { what: 'not under /proxy/', path: '/v2/foo/manifests/latest', expect: { status: 404 } },
  // hosts
  { what: 'unknown host', path: '/proxy/evil.example/v2/', expect: { status: 403, reason: /evil\.example is not a configured registry/ } },
  { what: 'host with credentials', path: '/proxy/user@ghcr.io/v2/', expect: { status: 404 } },
  { what: 'host is case-insensitive', path: '/proxy/GHCR.IO/v2/', expect: { kind: 'registry', upstream: 'https://ghcr.io/v2/' } },
  {
    what: 'index.docker.io is Docker Hub',
    path: '/proxy/index.docker.io/v2/',
    config: publicListen,
    expect: { kind: 'registry', upstream: 'https://registry-1.docker.io/v2/' },
  },
  {
    what: 'docker.io is Docker Hub',
    path: '/proxy/docker.io/v2/',
    config: publicListen,
    expect: { kind: 'registry', upstream: 'https://registry-1.docker.io/v2/' },
  },
  // realms
  {
    what: 'configured realm',
    path: '/proxy/auth.docker.io/token',
    query: '?service=registry.docker.io&scope=repository:library/alpine:pull',
    expect: { kind: 'realm', upstream: 'https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/alpine:pull' },
  },
  {
    what: 'realm under /v2 on a registry host',
    path: '/proxy/quay.io/v2/auth',
    query: '?service=quay.io',
    config: publicListen,
    expect: { kind: 'realm', upstream: 'https://quay.io/v2/auth?service=quay.io' },
  },
  { what: 'realm host, other path', path: '/proxy/auth.docker.io/admin', expect: { status: 403 } },
  {
    what: 'learned realm',
    path: '/proxy/auth.learned.example/oauth/token',
    query: '?scope=x',
    learned,
    expect: { kind: 'realm', upstream: 'https://auth.learned.example/oauth/token?scope=x' },
  },
  { what: 'learned realm, other path', path: '/proxy/auth.learned.example/other', learned, expect: { status: 403 } },
  {
    what: 'unknown realm',
    path: '/proxy/auth.learned.example/oauth/token',
    learned: noneLearned,
    expect: { status: 403, reason: /not a configured registry, mirror or token realm/ },
  },
  // loopback rules
  {
    what: 'loopback registry while listening on loopback',
    path: '/proxy/127.0.0.1:5000/v2/foo/manifests/latest',
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5000/v2/foo/manifests/latest' },
  },
  {
    what: 'localhost registry while listening on loopback',
    path: '/proxy/localhost:5001/v2/',
    expect: { kind: 'registry', upstream: 'http://localhost:5001/v2/' },
  },
  {
    what: 'loopback registry not configured (public listen)',
    path: '/proxy/127.0.0.1:5000/v2/',
    config: publicListen,
    expect: { status: 403 },
  },
  {
    what: 'loopback registry configured, public listen',
    path: '/proxy/127.0.0.1:5000/v2/',
    config: publicWithLoopbackRegistry,
    expect: { status: 403, reason: /loopback address/ },
  },
  {
    what: 'private registry configured, public listen',
    path: '/proxy/10.1.2.3/v2/',
    config: publicWithLoopbackRegistry,
    expect: { status: 403, reason: /private address/ },
  },
  {
    what: 'link-local realm, public listen',
    path: '/proxy/169.254.169.254/latest',
    config: publicWithLoopbackRegistry,
    expect: { status: 403, reason: /link-local/ },
  },
  {
    what: 'loopback registry, public listen, allowLoopback true',
    path: '/proxy/127.0.0.1:5000/v2/',
    config: publicAllowLoopback,
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5000/v2/' },
  },
  {
    what: 'loopback registry, loopback listen, allowLoopback false',
    path: '/proxy/127.0.0.1:5000/v2/',
    config: loopbackDenied,
    expect: { status: 403, reason: /loopback/ },
  },
  {
    what: 'learned loopback realm, loopback listen',
    path: '/proxy/127.0.0.1:9000/token',
    learned,
    expect: { kind: 'realm', upstream: 'http://127.0.0.1:9000/token' },
  },
  {
    what: 'learned loopback realm, public listen',
    path: '/proxy/127.0.0.1:9000/token',
    learned,
    config: publicListen,
    expect: { status: 403, reason: /loopback/ },
  },
  {
    what: 'unlisted loopback registry while listening on loopback (auto): http, like Docker',
    path: '/proxy/localhost:5999/v2/x/manifests/1',
    expect: { kind: 'registry', upstream: 'http://localhost:5999/v2/x/manifests/1' },
  },
  {
    what: 'unlisted 127.0.0.2 registry while listening on loopback (auto)',
    path: '/proxy/127.0.0.2:7000/v2/',
    expect: { kind: 'registry', upstream: 'http://127.0.0.2:7000/v2/' },
  },
  { what: 'unlisted loopback registry, public listen', path: '/proxy/localhost:5999/v2/', config: publicListen, expect: { status: 403 } },
  {
    what: 'unlisted loopback registry, public listen, allowLoopback true',
    path: '/proxy/localhost:5999/v2/',
    config: publicAllowLoopback,
    expect: { status: 403 },
  },
  {
    what: 'unlisted loopback host, non-API path (an unlearned realm) stays refused',
    path: '/proxy/127.0.0.1:9999/token',
    expect: { status: 403, reason: /not a configured registry, mirror or token realm/ },
  },
  { what: 'unlisted private registry while listening on loopback', path: '/proxy/10.0.0.5:5000/v2/', expect: { status: 403 } },
  // mirrors
  {
    what: 'docker.io mirror serves registry-1.docker.io',
    path: '/proxy/registry-1.docker.io/v2/library/alpine/manifests/3',
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5002/v2/library/alpine/manifests/3' },
  },
  {
    what: 'docker.io mirror serves index.docker.io',
    path: '/proxy/index.docker.io/v2/',
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5002/v2/' },
  },
  {
    what: 'mirror for another host',
    path: `/proxy/quay.io/v2/foo/blobs/${DIGEST}`,
    expect: { kind: 'registry', upstream: `https://quay-mirror.example/v2/foo/blobs/${DIGEST}` },
  },
  {
    what: 'mirror does not capture realms',
    path: '/proxy/quay.io/v2/auth',
    expect: { kind: 'realm', upstream: 'https://quay.io/v2/auth' },
  },
  { what: 'loopback mirror, allowLoopback false', path: '/proxy/docker.io/v2/', config: loopbackDenied, expect: { status: 403 } },
  // mirrors get no Authorization unless configured
  {
    what: 'a mirror is not handed Authorization',
    path: '/proxy/docker.io/v2/',
    expect: { kind: 'registry', upstream: 'http://127.0.0.1:5002/v2/', forwardAuthorization: false },
  },
  {
    what: 'a mirror configured with forwardAuthorization is',
    path: '/proxy/docker.io/v2/',
    config: { ...local, authorizedMirrors: ['docker.io'] },
    expect: { kind: 'registry', forwardAuthorization: true },
  },
  { what: 'a registry is handed Authorization', path: '/proxy/ghcr.io/v2/', expect: { kind: 'registry', forwardAuthorization: true } },
  { what: 'a realm is handed Authorization', path: '/proxy/auth.docker.io/token', expect: { kind: 'realm', forwardAuthorization: true } },
  // loops
  {
    what: 'a request carrying our Via',
    path: '/proxy/ghcr.io/v2/',
    headers: { via: '1.1 longshore' },
    expect: { status: 508, reason: /already went through this proxy/ },
  },
  {
    what: 'our Via among others, any case',
    path: '/proxy/ghcr.io/v2/',
    headers: { Via: 'HTTP/1.1 cache (x), 1.1 LongShore' },
    expect: { status: 508 },
  },
  {
    what: "another proxy's Via is fine",
    path: '/proxy/ghcr.io/v2/',
    headers: { via: '1.1 longshore-cache, 1.0 fred' },
    expect: { kind: 'registry' },
  },
  {
    what: 'the proxy itself as a registry',
    path: '/proxy/127.0.0.1:8080/v2/',
    self: ['127.0.0.1:8080'],
    expect: { status: 508, reason: /this proxy itself/ },
  },
  {
    what: 'the proxy itself under another loopback name',
    path: '/proxy/localhost:8080/v2/',
    self: selfAuthorities(new URL('http://127.0.0.1:8080/'), { host: '127.0.0.1', port: 8080 }),
    expect: { status: 508 },
  },
  {
    what: 'another loopback port is not the proxy',
    path: '/proxy/localhost:8081/v2/',
    self: ['127.0.0.1:8080', 'localhost:8080'],
    expect: { kind: 'registry' },
  },
  // more loopback and non-public literal forms
  { what: 'foo.localhost is loopback (RFC 6761)', path: '/proxy/foo.localhost:5000/v2/', config: publicListen, expect: { status: 403 } },
  { what: 'IPv4-translated loopback', path: '/proxy/[::ffff:0:7f00:1]:5000/v2/', config: publicListen, expect: { status: 403 } },
];

describe('decide', () => {
  it.each(rows)('$what', (row) => {
    const decision = decide(
      { method: row.method ?? 'GET', path: row.path, query: row.query ?? '', headers: row.headers ?? {}, self: row.self ?? [] },
      row.config ?? local,
      row.learned ?? noneLearned,
    );
    if ('status' in row.expect) {
      expect(decision.allow).toBe(false);
      if (decision.allow) return;
      expect(decision.status).toBe(row.expect.status);
      if (row.expect.reason) expect(decision.reason).toMatch(row.expect.reason);
    } else {
      expect(decision).toMatchObject({ allow: true, kind: row.expect.kind });
      if (row.expect.upstream && decision.allow && decision.kind !== 'preflight') {
        expect(decision.upstream.href).toBe(row.expect.upstream);
      }
      if (row.expect.forwardAuthorization !== undefined && decision.allow && decision.kind !== 'preflight') {
        expect(decision.forwardAuthorization).toBe(row.expect.forwardAuthorization);
      }
    }
  });
});

describe('decideRedirect', () => {
  const from = new URL(`https://ghcr.io/v2/foo/blobs/${DIGEST}`);
  it.each([
    [
      'absolute CDN URL',
      'https://pkg-containers.githubusercontent.com/x?sig=1',
      publicListen,
      'https://pkg-containers.githubusercontent.com/x?sig=1',
    ],
    ['relative Location', '/v2/other', publicListen, 'https://ghcr.io/v2/other'],
    ['loopback target while listening on loopback', 'http://127.0.0.1:9000/blob', local, 'http://127.0.0.1:9000/blob'],
  ])('follows %s', (_what, location, config, expected) => {
    const d = decideRedirect(from, location, config);
    expect(d.allow && d.upstream.href).toBe(expected);
  });
  it.each([
    ['file: URL', 'file:///etc/passwd', local, /only http and https/],
    ['ftp URL', 'ftp://cdn.example/x', local, /only http and https/],
    ['loopback while listening publicly', 'http://127.0.0.1:9000/blob', publicListen, /loopback/],
    ['metadata address', 'http://169.254.169.254/latest/meta-data', publicListen, /link-local/],
    ['IPv6 loopback', 'http://[::1]:8080/', publicListen, /loopback/],
    ['IPv4-mapped IPv6 loopback', 'http://[::ffff:127.0.0.1]/', publicListen, /loopback/],
    ['decimal IPv4 loopback', 'http://2130706433/', publicListen, /loopback/],
    ['localhost subdomain', 'http://foo.localhost/', publicListen, /loopback/],
    ['URL with credentials', 'https://u:p@cdn.example/x', publicListen, /credentials/],
    ['IPv4-translated loopback', 'http://[::ffff:0:7f00:1]/', publicListen, /loopback/],
    ['IPv4-compatible private', 'http://[::10.0.0.1]/', publicListen, /private/],
    ['NAT64 metadata address', 'http://[64:ff9b::a9fe:a9fe]/', publicListen, /link-local/],
  ])('refuses %s', (_what, location, config, reason) => {
    const d = decideRedirect(from, location, config);
    expect(d.allow).toBe(false);
    if (!d.allow) {
      expect(d.status).toBe(502);
      expect(d.reason).toMatch(reason);
    }
  });

  const self = selfAuthorities(new URL('http://127.0.0.1:8080/proxy/x'), { host: '127.0.0.1', port: 8080 });
  it.each([
    ['its own /proxy URL', 'http://127.0.0.1:8080/proxy/ghcr.io/v2/'],
    ['its own URL by another loopback name', 'http://localhost:8080/proxy/ghcr.io/v2/'],
    ['its own URL over IPv6 loopback', 'http://[::1]:8080/anything'],
  ])('refuses a redirect to %s as a loop', (_what, location) => {
    const d = decideRedirect(from, location, local, self);
    expect(d).toMatchObject({ allow: false, status: 508, code: 'PROXY_LOOP' });
  });
});

describe('learnableRealm', () => {
  it.each([
    ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io"', publicListen, 'https://auth.docker.io/token'],
    ['Bearer service="x", realm="https://r.example/t?x=1"', publicListen, 'https://r.example/t'],
    ['bearer realm=https://r.example/t', publicListen, 'https://r.example/t'],
    ['Basic realm="Registry"', publicListen, undefined],
    ['Bearer realm="ftp://r.example/t"', publicListen, undefined],
    ['Bearer realm="http://127.0.0.1:9000/token"', publicListen, undefined],
    ['Bearer realm="http://127.0.0.1:9000/token"', local, 'http://127.0.0.1:9000/token'],
    ['', publicListen, undefined],
    [`Bearer realm="https://r.example/${'a'.repeat(600)}"`, publicListen, undefined],
    ['Bearer realm="http://[::ffff:0:7f00:1]/token"', publicListen, undefined],
  ])('%s', (header, config, expected) => {
    expect(learnableRealm(header, config)).toBe(expected);
  });

  it.each([
    ['registry', false, true],
    ['registry', true, false], // a redirect target's challenge
    ['realm', false, false],
    ['redirect', false, false],
  ] as const)('kind %s, redirected %s → may learn: %s', (kind, redirected, expected) => {
    expect(mayLearnFrom(kind, redirected)).toBe(expected);
  });
});

describe('corsAccess', () => {
  const request = new URL('http://127.0.0.1:8080/proxy/ghcr.io/v2/');
  it.each([
    [null, [], 'none'],
    ['http://127.0.0.1:8080', [], 'allowed'],
    ['https://127.0.0.1:8080', [], 'allowed'], // behind a TLS terminator the scheme differs
    ['http://127.0.0.1:9090', [], 'denied'],
    ['http://localhost:8080', [], 'denied'], // another origin, though the same machine
    ['https://evil.example', [], 'denied'],
    ['https://app.example', ['https://app.example'], 'allowed'],
    ['https://app.example:8443', ['https://app.example'], 'denied'],
    ['http://app.example', ['https://app.example'], 'denied'],
    ['null', [], 'denied'],
    ['null', ['*'], 'allowed'],
    ['https://anyone.example', ['*'], 'allowed'],
    ['not a url', [], 'denied'],
  ] as const)('%s with %j → %s', (origin, allowed, expected) => {
    expect(corsAccess(origin, request, allowed)).toBe(expected);
  });
});

describe('carriesOurVia', () => {
  it.each([
    [null, false],
    ['', false],
    ['1.1 longshore', true],
    ['1.0 fred, 1.1 longshore', true],
    ['HTTP/1.1 LONGSHORE (comment)', true],
    ['1.1 longshore.example', false],
    ['1.1 nginx', false],
    ['longshore', false],
  ] as const)('%s → %s', (via, expected) => {
    expect(carriesOurVia(via)).toBe(expected);
  });
});

describe('selfAuthorities', () => {
  it('names the request host, the listen address and, on loopback or wildcard, the loopback names', () => {
    expect(selfAuthorities(new URL('https://longshore.example/proxy/x'), { host: '0.0.0.0', port: 8080 })).toEqual(
      expect.arrayContaining(['longshore.example:443', '0.0.0.0:8080', '127.0.0.1:8080', 'localhost:8080', '[::1]:8080']),
    );
    expect(selfAuthorities(new URL('http://10.0.0.2:8080/proxy/x'), { host: '10.0.0.2', port: 8080 })).toEqual(['10.0.0.2:8080']);
  });
});

describe('distributionPath', () => {
  it('rebuilds the path from decoded, checked parts', () => {
    expect(distributionPath('/v2/library%2Falpine/manifests/latest')).toBe('/v2/library/alpine/manifests/latest');
    expect(distributionPath('/v2/foo/manifests/%ZZ')).toEqual({ reason: 'bad percent-encoding' });
    expect(distributionPath(`/v2/${'a'.repeat(256)}/tags/list`)).toHaveProperty('reason');
  });
});

describe('classifyHost', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.8.9.10', 'loopback'],
    ['localhost', 'loopback'],
    ['[::1]', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.5.4', 'private'],
    ['172.32.0.1', undefined],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['[::]', 'unspecified'],
    ['[fd00::1]', 'private'],
    ['[fe80::1]', 'link-local'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['[::ffff:8.8.8.8]', undefined],
    ['[64:ff9b::a00:1]', 'private'],
    ['[2002:7f00:1::]', 'loopback'],
    ['[2606:4700::1111]', undefined],
    ['8.8.8.8', undefined],
    ['ghcr.io', undefined],
    ['224.0.0.1', 'reserved'],
    // RFC 6761: every *.localhost name is loopback
    ['foo.localhost', 'loopback'],
    ['a.b.localhost.', 'loopback'],
    ['LOCALHOST', 'loopback'],
    ['localhost.example', undefined],
    ['notlocalhost', undefined],
    // IPv4 inside IPv6, every written form
    ['[::ffff:0:7f00:1]', 'loopback'],
    ['[::ffff:0:127.0.0.1]', 'loopback'],
    ['[::ffff:0:a00:1]', 'private'],
    ['[0:0:0:0:0:ffff:7f00:1]', 'loopback'],
    ['[::ffff:127.0.0.1]', 'loopback'],
    ['[::ffff:a9fe:a9fe]', 'link-local'],
    ['[::127.0.0.1]', 'loopback'],
    ['[::8.8.8.8]', 'reserved'],
    ['[::ffff:0:808:808]', 'reserved'],
    ['[::1:0:0:1]', 'reserved'],
    ['[64:ff9b:1::a00:1]', 'private'],
    ['[2001:0:4136:e378::1]', 'reserved'],
    ['[2001:db8::1]', 'reserved'],
    ['[fec0::1]', 'private'],
    ['[100::1]', 'reserved'],
    ['[::1%25eth0]', 'loopback'],
    ['192.0.2.1', 'reserved'],
    ['203.0.113.9', 'reserved'],
  ])('%s → %s', (host, kind) => {
    expect(classifyHost(host)).toBe(kind);
  });
});

describe('mirror fallback and foreign layer sources', () => {
  const withForeign = parseConfig({
    ...structuredClone(DEFAULT_CONFIG),
    registries: [...DEFAULT_CONFIG.registries, { host: '127.0.0.1:5000', scheme: 'http' }],
    mirrors: { 'docker.io': 'http://127.0.0.1:5002', '127.0.0.1:5000': { url: 'http://127.0.0.1:5003', fallback: false } },
    foreignLayerHosts: ['mcr.microsoft.com/layers/', 'http://127.0.0.1:7000/blobs'],
  });
  const go = (path: string, config: ProxyConfig = withForeign) => decide({ method: 'GET', path, query: '' }, config, noneLearned);

  it('a mirrored request carries the registry itself as its fallback', () => {
    const d = go('/proxy/docker.io/v2/library/alpine/manifests/3');
    expect(d.allow && d.kind === 'registry' && d.upstream.href).toBe('http://127.0.0.1:5002/v2/library/alpine/manifests/3');
    expect(d.allow && d.kind !== 'preflight' && d.fallback?.href).toBe('https://registry-1.docker.io/v2/library/alpine/manifests/3');
    expect(d.allow && d.kind !== 'preflight' && d.mirror).toBe('127.0.0.1:5002');
  });

  it('"fallback": false leaves the mirror alone', () => {
    const d = go('/proxy/127.0.0.1:5000/v2/x/manifests/1');
    expect(d.allow && d.kind !== 'preflight' && d.upstream.host).toBe('127.0.0.1:5003');
    expect(d.allow && d.kind !== 'preflight' && d.fallback).toBeUndefined();
  });

  it('an unmirrored registry has no fallback and no mirror', () => {
    const d = go('/proxy/ghcr.io/v2/x/manifests/1');
    expect(d.allow && d.kind !== 'preflight' && (d.fallback ?? d.mirror)).toBeUndefined();
  });

  it.each([
    ['/proxy/mcr.microsoft.com/layers/abc.tar.gz', 'https://mcr.microsoft.com/layers/abc.tar.gz'],
    ['/proxy/127.0.0.1:7000/blobs/sha256/ab', 'http://127.0.0.1:7000/blobs/sha256/ab'],
    ['/proxy/127.0.0.1:7000/blobs', 'http://127.0.0.1:7000/blobs'],
  ])('foreign layer %s → %s, without Authorization', (path, upstream) => {
    const d = go(path);
    expect(d.allow && d.kind).toBe('foreign');
    expect(d.allow && d.kind !== 'preflight' && d.upstream.href).toBe(upstream);
    expect(d.allow && d.kind !== 'preflight' && d.forwardAuthorization).toBe(false);
  });

  it.each([
    '/proxy/mcr.microsoft.com/other/abc.tar.gz', // outside the prefix
    '/proxy/127.0.0.1:7000/blobsmith/x', // a prefix is a path segment boundary
    '/proxy/evil.example/layers/abc.tar.gz', // another host
  ])('%s is refused', (path) => {
    expect(go(path)).toMatchObject({ allow: false });
  });

  it('a loopback foreign source is refused while loopback is not allowed', () => {
    expect(go('/proxy/127.0.0.1:7000/blobs/x', { ...withForeign, allowLoopback: false })).toMatchObject({ allow: false, status: 403 });
  });
});
