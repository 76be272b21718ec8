// Errors people meet at real registries (issue #12), each emulated on loopback and judged at the
// core level: the code, one line saying what happened, and a next step.
//   - Docker Hub's answer for a missing repository: the token server's HUB_TOKEN_PATH grants
//     nothing for it, so the real registry answers 401 error="insufficient_scope";
//   - an HTML 502 page from something in between (the tamper proxy plays an nginx front);
//   - a registry that is down, and a host the proxy is not configured for (longshore's own proxy
//     handler, called in-process).
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { proxyRewrite, type Transport } from '../../src/core/http/transport.ts';
import { createProxyHandler } from '../../src/proxy/handler.ts';
import { parseConfig } from '../../src/proxy/config.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { HUB_TOKEN_PATH } from '../helpers/token-server.ts';
import { rejection } from '../helpers/assert.ts';

const env = inject('registryEnv');
let hub: TamperProxy;
let front: TamperProxy;

beforeAll(async () => {
  // The token registry, its challenge naming the Hub-like realm.
  hub = await startTamperProxy(env.token.url, { challengeRealm: `${env.tokenServer.origin}${HUB_TOKEN_PATH}` });
  front = await startTamperProxy(env.anon.url);
});

afterAll(async () => {
  await hub?.close();
  await front?.close();
});

const noWait = { sleep: async () => undefined };

function source(transport?: Transport): RemoteSource {
  return new RemoteSource(new RegistryClient({ transport: transport ?? { fetch: (u, i) => globalThis.fetch(u, i) }, retry: noWait }));
}

/** longshore's proxy handler in-process, configured for `hosts`; the client goes through it as the page does. */
function viaProxy(hosts: string[]): Transport {
  const handler = createProxyHandler(
    parseConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        registries: hosts.map((host) => ({ host, scheme: 'http' })),
        mirrors: {},
        tokenRealms: [],
        allowLoopback: true,
      },
      'test',
    ),
  );
  return {
    fetch: async (input, init) => (await handler(new Request(input, init))) ?? new Response('not a proxy path', { status: 404 }),
    rewrite: proxyRewrite('http://longshore.test'),
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('errors people understand', () => {
  it('Docker Hub style: a missing repository is 401 insufficient_scope → NOT_FOUND_OR_PRIVATE, "sign in" as the next step', async () => {
    const error = await rejection(source().resolve(parseReference(`${hub.host}/library/no-such-image:latest`)));
    expect(error.code).toBe('NOT_FOUND_OR_PRIVATE');
    expect(error.message).toMatch(/not found, or private/);
    expect(error.hint).toMatch(/sign in/);
    expect(error.retryable).toBe(false);
    expect(error.data).toMatchObject({ status: 401 });
    // The same registry and realm serve a repository that exists: only missing ones are hidden.
    const found = await source().resolve(parseReference(`${hub.host}/${env.fixtures.oci.path}`));
    expect(found.digest).toBe(env.fixtures.oci.manifest.digest);
    // And a private one looks the same to an anonymous caller, as on Docker Hub.
    expect((await rejection(source().resolve(parseReference(`${hub.host}/${env.fixtures.private.path}`)))).code).toBe(
      'NOT_FOUND_OR_PRIVATE',
    );
  });

  it('an HTML 502 page → ERROR_PAGE naming the page, not its markup', async () => {
    front.rules.failManifests = { status: 502, count: 10, html: true };
    try {
      const error = await rejection(source().resolve(parseReference(`${front.host}/${env.fixtures.oci.path}`)));
      expect(error.code).toBe('ERROR_PAGE');
      expect(error.message).toContain('"502 Bad Gateway"');
      expect(error.message).not.toMatch(/[<>]/);
      expect(error.hint).toMatch(/try again/i);
      expect(error.retryable).toBe(true);
    } finally {
      front.rules.failManifests = undefined;
    }
  });

  it('a registry that is down, through the proxy → PROXY_UNREACHABLE: "did not answer", check the host, try later', async () => {
    const host = `127.0.0.1:${await closedPort()}`;
    const error = await rejection(source(viaProxy([host])).resolve(parseReference(`${host}/test/oci:latest`)));
    expect(error.code).toBe('PROXY_UNREACHABLE');
    expect(error.message).toContain(`${host} did not answer`);
    expect(error.hint).toContain(host);
  });

  it('a registry the proxy is not configured for → PROXY_DENIED, saying how to allow it', async () => {
    const error = await rejection(source(viaProxy([env.anon.host])).resolve(parseReference(`${env.basic.host}/test/oci:latest`)));
    expect(error.code).toBe('PROXY_DENIED');
    expect(error.message).toContain(`not allowed to reach ${env.basic.host}`);
    expect(error.hint).toContain(`LONGSHORE_REGISTRIES=http://${env.basic.host}`);
    expect(error.hint).toContain('"registries"');
  });
});
