import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_CONFIG,
  ProxyConfigError,
  loadConfig,
  loopbackAllowed,
  parseConfig,
  parseJsonc,
  publicConfig,
} from '../../src/proxy/config.ts';

const noFile = async (path: string): Promise<string> => {
  throw new Error(`unexpected read of ${path}`);
};

/** loadConfig expected to fail; returns the problems it reported. */
async function problemsOf(promise: Promise<unknown>): Promise<string[]> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyConfigError);
  const configError = err as ProxyConfigError;
  expect(configError.code).toBe('INVALID_ARGUMENT');
  expect(configError.message).toContain('Invalid longshore proxy config');
  return [...configError.problems];
}

describe('default config', () => {
  it('is the public registries with their realms, on loopback', async () => {
    const config = await loadConfig({ env: {}, readFile: noFile });
    expect(config).toEqual(DEFAULT_CONFIG);
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.registries.map((r) => r.host)).toEqual([
      'registry-1.docker.io',
      'ghcr.io',
      'quay.io',
      'gcr.io',
      'registry.k8s.io',
      'mcr.microsoft.com',
      'public.ecr.aws',
    ]);
    expect(config.registries.every((r) => r.scheme === 'https')).toBe(true);
    expect(config.tokenRealms).toContain('https://auth.docker.io/token');
    expect(config.tokenRealms).toContain('https://ghcr.io/token');
    expect(config.tokenRealms).toContain('https://quay.io/v2/auth');
    expect(config.mirrors).toEqual({});
    expect(config.allowLoopback).toBe('auto');
    expect(loopbackAllowed(config)).toBe(true);
  });

  it('is frozen, so nobody edits it in place', () => {
    expect(Object.isFrozen(DEFAULT_CONFIG.registries)).toBe(true);
  });

  it('exposes only hosts in the public part', async () => {
    const config = await loadConfig({ env: { LONGSHORE_MIRRORS: 'docker.io=http://127.0.0.1:5000' }, readFile: noFile });
    const pub = publicConfig(config);
    expect(pub.proxyPath).toBe('/proxy');
    expect(pub.registries).toContain('ghcr.io');
    expect(pub.registries).toContain('docker.io');
    expect(JSON.stringify(pub)).not.toContain('5000');
  });
});

describe('config file (LONGSHORE_CONFIG)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'longshore-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is merged over the default: objects key by key, arrays replaced (JSON with comments)', async () => {
    const path = join(dir, 'merge.jsonc');
    await writeFile(
      path,
      `{
      // only our own registry, and a Docker Hub mirror
      "listen": { "port": 9090 },
      "registries": [ { "host": "127.0.0.1:5000", "scheme": "http" }, "https://R.Example:443", ],
      "mirrors": { "docker.io": "http://127.0.0.1:5001/" },
      /* realms stay the default */
    }`,
    );
    const config = await loadConfig({ env: { LONGSHORE_CONFIG: path } });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.registries).toEqual([
      { host: '127.0.0.1:5000', scheme: 'http' },
      { host: 'r.example', scheme: 'https' },
    ]);
    expect(config.mirrors).toEqual({ 'docker.io': 'http://127.0.0.1:5001' });
    expect(config.tokenRealms).toEqual(DEFAULT_CONFIG.tokenRealms);
  });

  it('reports a missing file and bad JSON with the variable and path', async () => {
    const missing = join(dir, 'nope.json');
    expect(await problemsOf(loadConfig({ env: { LONGSHORE_CONFIG: missing } }))).toEqual([
      expect.stringMatching(new RegExp(`^LONGSHORE_CONFIG: cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)),
    ]);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{ "listen": ');
    expect((await problemsOf(loadConfig({ env: { LONGSHORE_CONFIG: bad } })))[0]).toMatch(/is not valid JSON/);
    const array = join(dir, 'array.json');
    await writeFile(array, '[]');
    expect((await problemsOf(loadConfig({ env: { LONGSHORE_CONFIG: array } })))[0]).toMatch(/must hold a JSON object/);
  });
});

describe('environment overrides', () => {
  it('LONGSHORE_HOST, LONGSHORE_PORT, LONGSHORE_REGISTRIES (added), LONGSHORE_MIRRORS', async () => {
    const config = await loadConfig({
      env: {
        LONGSHORE_HOST: 'localhost',
        LONGSHORE_PORT: '0',
        LONGSHORE_REGISTRIES: 'http://127.0.0.1:5000, https://r.example ,ghcr.io',
        LONGSHORE_MIRRORS: 'docker.io=http://127.0.0.1:5001,quay.io=https://quay-mirror.example',
      },
      readFile: noFile,
    });
    expect(config.listen).toEqual({ host: 'localhost', port: 0 });
    expect(config.registries).toContainEqual({ host: '127.0.0.1:5000', scheme: 'http' });
    expect(config.registries).toContainEqual({ host: 'r.example', scheme: 'https' });
    expect(config.registries.filter((r) => r.host === 'ghcr.io')).toHaveLength(1);
    expect(config.registries).toHaveLength(DEFAULT_CONFIG.registries.length + 2);
    expect(config.mirrors).toEqual({ 'docker.io': 'http://127.0.0.1:5001', 'quay.io': 'https://quay-mirror.example' });
  });

  it('environment wins over the file', async () => {
    const config = await loadConfig({
      env: { LONGSHORE_CONFIG: '/etc/longshore.json', LONGSHORE_PORT: '7000' },
      readFile: async () => '{ "listen": { "host": "::1", "port": 9000 }, "allowLoopback": false }',
    });
    expect(config.listen).toEqual({ host: '::1', port: 7000 });
    expect(config.allowLoopback).toBe(false);
    expect(loopbackAllowed(config)).toBe(false);
  });

  it('LONGSHORE_ALLOW_LOOPBACK lets a public listener reach a local registry', async () => {
    const env = { LONGSHORE_HOST: '0.0.0.0', LONGSHORE_REGISTRIES: 'http://127.0.0.1:5000' };
    const problems = await problemsOf(loadConfig({ env, readFile: noFile }));
    expect(problems).toEqual([
      expect.stringMatching(/registry 127\.0\.0\.1:5000 is a loopback address but the server listens on 0\.0\.0\.0.*allowLoopback: true/),
    ]);
    const config = await loadConfig({ env: { ...env, LONGSHORE_ALLOW_LOOPBACK: 'true' }, readFile: noFile });
    expect(loopbackAllowed(config)).toBe(true);
  });

  it('reports every bad variable at once', async () => {
    const problems = await problemsOf(
      loadConfig({
        env: {
          LONGSHORE_PORT: 'eighty',
          LONGSHORE_REGISTRIES: 'ftp://x.example,https://ok.example,https://bad.example/path',
          LONGSHORE_MIRRORS: 'docker.io',
          LONGSHORE_ALLOW_LOOPBACK: 'yes',
        },
        readFile: noFile,
      }),
    );
    expect(problems).toEqual([
      'LONGSHORE_PORT must be a port number, got "eighty"',
      'LONGSHORE_REGISTRIES: "ftp://x.example" must be "https://host[:port]" or "http://host[:port]"',
      'LONGSHORE_REGISTRIES: "https://bad.example/path" must be "https://host[:port]" or "http://host[:port]"',
      'LONGSHORE_MIRRORS: "docker.io" must be "registry=http(s)://mirror[:port]"',
      'LONGSHORE_ALLOW_LOOPBACK must be true, false or auto, got "yes"',
    ]);
  });
});

describe('invalid config messages', () => {
  const base = () => structuredClone(DEFAULT_CONFIG) as unknown as Record<string, unknown>;
  const problems = (input: unknown): string[] => {
    try {
      parseConfig(input, 'my.json');
    } catch (err) {
      expect(err).toBeInstanceOf(ProxyConfigError);
      return [...(err as ProxyConfigError).problems];
    }
    throw new Error('expected a ProxyConfigError');
  };

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['unknown key', { registry: [] }, /^my\.json: unknown key "registry" \(known: listen, registries/],
    ['bad port', { listen: { host: '127.0.0.1', port: 70000 } }, /listen\.port must be an integer from 0 to 65535, got 70000/],
    ['bad listen host', { listen: { host: 'a b', port: 1 } }, /listen\.host must be a host name or IP address/],
    ['registries not an array', { registries: 'ghcr.io' }, /registries must be an array/],
    [
      'scheme in host',
      { registries: [{ host: 'https://ghcr.io' }] },
      /registries\[0\]: host "https:\/\/ghcr.io" must not include a scheme; write \{"host": "ghcr.io", "scheme": "https"\}/,
    ],
    ['bad scheme', { registries: [{ host: 'ghcr.io', scheme: 'ftp' }] }, /registries\[0\]: scheme must be "http" or "https", got "ftp"/],
    ['host with a path', { registries: [{ host: 'ghcr.io/foo' }] }, /registries\[0\]: host must be "hostname\[:port\]"/],
    ['unknown registry key', { registries: [{ host: 'ghcr.io', insecure: true }] }, /registries\[0\]: unknown key "insecure"/],
    [
      'mirror with a path',
      { mirrors: { 'docker.io': 'https://m.example/v2/' } },
      /mirrors\["docker.io"\] must be an http\(s\) URL with no path/,
    ],
    [
      'mirror key not a host',
      { mirrors: { 'https://docker.io': 'https://m.example' } },
      /mirrors: key "https:\/\/docker.io" must be a registry host/,
    ],
    ['realm with query', { tokenRealms: ['https://auth.example/token?x=1'] }, /tokenRealms\[0\] must be an http\(s\) URL without query/],
    ['allowLoopback string', { allowLoopback: 'yes' }, /allowLoopback must be true, false or "auto", got "yes"/],
    [
      'loopback mirror, loopback refused',
      { allowLoopback: false, mirrors: { 'docker.io': 'http://localhost:5000' } },
      /mirror docker.io → http:\/\/localhost:5000 is a loopback address but allowLoopback is false/,
    ],
    [
      'private realm, public listen',
      { listen: { host: '0.0.0.0', port: 80 }, tokenRealms: ['http://10.0.0.1/token'] },
      /token realm http:\/\/10.0.0.1\/token is a private address/,
    ],
    [
      'mirror fallback not a boolean',
      { mirrors: { 'docker.io': { url: 'https://m.example', fallback: 'no' } } },
      /mirrors\["docker.io"\]\.fallback must be true or false, got "no"/,
    ],
    [
      'mirrorsWithoutFallback naming no mirror',
      { mirrorsWithoutFallback: ['ghcr.io'] },
      /mirrorsWithoutFallback: "ghcr.io" is not a mirror key/,
    ],
    ['foreignLayerHosts not an array', { foreignLayerHosts: 'mcr.microsoft.com' }, /foreignLayerHosts must be an array of URL prefixes/],
    [
      'foreign source with a query',
      { foreignLayerHosts: ['https://x.example/a?b=1'] },
      /foreignLayerHosts\[0\] must be an http\(s\) URL prefix/,
    ],
    [
      'loopback foreign source, public listen',
      { listen: { host: '0.0.0.0', port: 80 }, foreignLayerHosts: ['http://127.0.0.1:9/'] },
      /foreign layer source http:\/\/127.0.0.1:9\/ is a loopback address/,
    ],
  ])('%s', (_what, override, message) => {
    const found = problems({ ...base(), ...override });
    expect(
      found.some((p) => message.test(p)),
      found.join('\n'),
    ).toBe(true);
  });

  it('is not an object', () => {
    expect(problems(null)).toEqual(['my.json: must be a JSON object']);
  });
});

describe('parseJsonc', () => {
  it('keeps comment-like text inside strings', () => {
    expect(parseJsonc('{"a": "http://x/*y*/", // c\n "b": [1,2,],}')).toEqual({ a: 'http://x/*y*/', b: [1, 2] });
  });
});

describe('limits, timeouts, origins', () => {
  it('default to documented values', async () => {
    const config = await loadConfig({ env: {}, readFile: noFile });
    expect(config.timeouts).toEqual({ connectMs: 10_000, headersMs: 30_000, bodyIdleMs: 30_000, poolWaitMs: 5_000 });
    expect(config.limits).toEqual({
      maxConnections: 1024,
      upstreamSocketsPerOrigin: 64,
      clientStreams: 32,
      clientRequestsPerSecond: 50,
      clientBurst: 200,
    });
    expect(config.allowedOrigins).toEqual([]);
    expect(config.trustForwardedFor).toBe(false);
    expect(config.authorizedMirrors).toEqual([]);
  });

  it('are read from the file (missing keys keep their default) and from LONGSHORE_* variables', async () => {
    const config = await loadConfig({
      env: {
        LONGSHORE_CONFIG: '/etc/longshore.json',
        LONGSHORE_BODY_IDLE_TIMEOUT_MS: '5000',
        LONGSHORE_CLIENT_STREAMS: '0',
        LONGSHORE_ALLOWED_ORIGINS: 'https://b.example',
        LONGSHORE_TRUST_FORWARDED_FOR: 'true',
      },
      readFile: async () =>
        JSON.stringify({
          timeouts: { headersMs: 2000 },
          limits: { maxConnections: 10 },
          allowedOrigins: ['https://a.example/', '*'],
          mirrors: { 'docker.io': { url: 'http://127.0.0.1:5001', forwardAuthorization: true } },
        }),
    });
    expect(config.timeouts).toEqual({ connectMs: 10_000, headersMs: 2000, bodyIdleMs: 5000, poolWaitMs: 5_000 });
    expect(config.limits).toMatchObject({ maxConnections: 10, clientStreams: 0 });
    expect(config.allowedOrigins).toEqual(['https://a.example', '*', 'https://b.example']);
    expect(config.trustForwardedFor).toBe(true);
    expect(config.mirrors).toEqual({ 'docker.io': 'http://127.0.0.1:5001' });
    expect(config.authorizedMirrors).toEqual(['docker.io']);
  });

  it('reports bad values with the key', async () => {
    const problems = await problemsOf(
      loadConfig({
        env: { LONGSHORE_CONFIG: 'x.json', LONGSHORE_POOL_WAIT_MS: 'soon', LONGSHORE_TRUST_FORWARDED_FOR: 'yes' },
        readFile: async () =>
          JSON.stringify({
            timeouts: { headersMs: 0, idleMs: 5 },
            limits: { clientStreams: -1 },
            allowedOrigins: ['https://a.example/path', 7],
            mirrors: { 'docker.io': { url: 'http://m.example', forwardAuthorization: 'yes' } },
          }),
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/LONGSHORE_POOL_WAIT_MS must be a whole number/),
        expect.stringMatching(/LONGSHORE_TRUST_FORWARDED_FOR must be true or false/),
      ]),
    );
    const fileProblems = await problemsOf(
      loadConfig({
        env: { LONGSHORE_CONFIG: 'x.json' },
        readFile: async () =>
          JSON.stringify({
            timeouts: { headersMs: 0, idleMs: 5 },
            limits: { clientStreams: -1 },
            allowedOrigins: ['https://a.example/path', 7],
            mirrors: { 'docker.io': { url: 'http://m.example', forwardAuthorization: 'yes' } },
          }),
      }),
    );
    expect(fileProblems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/timeouts\.headersMs must be an integer of at least 1, got 0/),
        expect.stringMatching(/timeouts: unknown key "idleMs"/),
        expect.stringMatching(/limits\.clientStreams must be an integer \(0 = no limit\), got -1/),
        expect.stringMatching(/allowedOrigins\[0\] must be "\*" or an http\(s\) origin/),
        expect.stringMatching(/allowedOrigins\[1\]/),
        expect.stringMatching(/mirrors\["docker.io"\]\.forwardAuthorization must be true or false/),
      ]),
    );
  });

  it('a config written before these keys existed still parses', () => {
    const config = parseConfig({
      listen: { host: '127.0.0.1', port: 0 },
      registries: [],
      mirrors: {},
      tokenRealms: [],
      allowLoopback: true,
    });
    expect(config.limits).toEqual(DEFAULT_CONFIG.limits);
    expect(config.mirrorsWithoutFallback).toEqual([]);
    expect(config.foreignLayerHosts).toEqual([]);
  });

  it('mirrors fall back by default; "fallback": false and foreignLayerHosts are normalised', () => {
    const config = parseConfig({
      ...structuredClone(DEFAULT_CONFIG),
      mirrors: { 'docker.io': 'https://m.example', 'ghcr.io': { url: 'https://g.example', fallback: false } },
      foreignLayerHosts: ['mcr.microsoft.com', 'https://go.microsoft.com/fwlink/', 'http://127.0.0.1:9/layers'],
    });
    expect(config.mirrorsWithoutFallback).toEqual(['ghcr.io']);
    expect(config.foreignLayerHosts).toEqual([
      'https://mcr.microsoft.com/',
      'https://go.microsoft.com/fwlink/',
      'http://127.0.0.1:9/layers',
    ]);
  });
});
