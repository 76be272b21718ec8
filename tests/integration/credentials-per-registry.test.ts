// Credentials belong to the registry they were typed for (issue #11): the page's state for a pull
// of several names, driven as the page drives it, hands each registry only its own pair, and the
// core client sends it only to that registry and the token realm that registry's challenge names.
// Judged at the real basic (htpasswd) and token registries and the token server's request log.
import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import type { Credentials } from '../../src/core/registry/auth.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import type { PullOutcome, PullRequest } from '../../src/browser/protocol.ts';
import { PullState, type BridgeLike } from '../../src/ui/state/pull-state.svelte.ts';
import { CredentialsState } from '../../src/ui/state/credentials.svelte.ts';
import { fixtureRef, readRequestLog, requestLogMark } from '../helpers/harness.ts';
import type { TokenRequestRecord } from '../helpers/token-server.ts';

const env = inject('registryEnv');
const MARK_QUERY = 'longshore_test';
const basicHeader = (c: Credentials) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;

interface Sent {
  host: string;
  authorization: string | null;
}

/** A bridge that runs the pull in-process with the core engine, as the worker does (pull-job.ts). */
function coreBridge(): BridgeLike & { sent: Sent[]; marker: string; requests: PullRequest[] } {
  const sent: Sent[] = [];
  const requests: PullRequest[] = [];
  const marker = randomUUID();
  const fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input);
    if (url.origin === env.tokenServer.origin) url.searchParams.append(MARK_QUERY, marker);
    sent.push({ host: url.host, authorization: new Headers(init.headers).get('authorization') });
    return globalThis.fetch(url, init);
  };
  return {
    sent,
    marker,
    requests,
    resolve: () => Promise.reject(new Error('not used')),
    async pull(request: PullRequest): Promise<PullOutcome> {
      requests.push(request);
      // The worker's lookup (pull-job.ts sourceFor): by the host the client asks for.
      const client = new RegistryClient({ transport: { fetch }, credentials: (host) => request.credentials?.[host] });
      const source = new RemoteSource(client);
      const store = new MemoryBlobStore();
      let digest = '';
      for (const name of request.references) digest = (await pull(source, parseReference(name), { store })).image.digest;
      return {
        blob: new Blob([]),
        saved: { kind: 'blob', name: 'x.tar', bytes: 0 },
        fileName: 'x.tar',
        size: 0,
        format: request.format,
        reference: request.references.join(' '),
        digest,
        platform: undefined,
      };
    },
  };
}

async function tokenLog(since: number, marker: string): Promise<TokenRequestRecord[]> {
  return (await readRequestLog<TokenRequestRecord>(env.tokenServer.requestLogUrl, since)).filter((r) =>
    r.query[MARK_QUERY]?.includes(marker),
  );
}

describe('credentials per registry', () => {
  it('a pair typed for the basic registry never reaches the token registry or its realm in a pull of both', async () => {
    const bridge = coreBridge();
    const state = new PullState(bridge, undefined, new CredentialsState());
    state.name = `${fixtureRef(env, env.basic, 'plain')} ${fixtureRef(env, env.token, 'oci')}`;
    expect(state.registries).toEqual([env.basic.host, env.token.host]);
    state.credentials.update(env.basic.host, env.basic.credentials);
    const mark = await requestLogMark(env.tokenServer.requestLogUrl);
    await state.pull();
    expect(state.error).toBeUndefined();
    expect(state.status).toBe('ready');

    expect(bridge.requests[0]!.credentials).toEqual({ [env.basic.host]: env.basic.credentials });
    const bob = basicHeader(env.basic.credentials);
    expect(bridge.sent.some((s) => s.authorization === bob)).toBe(true);
    expect(bridge.sent.filter((s) => s.authorization === bob).map((s) => s.host)).toEqual(
      bridge.sent.filter((s) => s.authorization === bob).map(() => env.basic.host),
    );
    // The token registry's realm was asked anonymously.
    const tokens = await tokenLog(mark, bridge.marker);
    expect(tokens.length).toBeGreaterThan(0);
    expect(tokens.map((t) => t.authorizationScheme)).toEqual(tokens.map(() => null));
  });

  it('two pairs for two registries: each goes only to its own registry, or the realm its registry named', async () => {
    const bridge = coreBridge();
    const state = new PullState(bridge, undefined, new CredentialsState());
    state.name = `${fixtureRef(env, env.basic, 'plain')}, ${fixtureRef(env, env.token, 'private')}`;
    state.credentials.update(env.basic.host, env.basic.credentials);
    state.credentials.update(env.token.host, env.token.credentials);
    const mark = await requestLogMark(env.tokenServer.requestLogUrl);
    await state.pull();
    expect(state.error).toBeUndefined();
    expect(state.outcome?.digest).toBe(env.fixtures.private.manifest.digest);

    const bob = basicHeader(env.basic.credentials);
    const alice = basicHeader(env.token.credentials);
    const tokenHost = new URL(env.tokenServer.origin).host;
    const hostsOf = (header: string) => [...new Set(bridge.sent.filter((s) => s.authorization === header).map((s) => s.host))];
    expect(hostsOf(bob)).toEqual([env.basic.host]);
    expect(hostsOf(alice)).toEqual([tokenHost]);
    // The token registry itself only ever saw Bearer tokens.
    for (const s of bridge.sent.filter((x) => x.host === env.token.host && x.authorization)) expect(s.authorization).toMatch(/^Bearer /);
    const tokens = await tokenLog(mark, bridge.marker);
    expect(tokens.map((t) => t.username)).toEqual(tokens.map(() => env.token.credentials.username));
  });

  it('a pair typed for one registry is not offered for a name on another one', () => {
    const state = new PullState(coreBridge(), undefined, new CredentialsState());
    state.name = `${fixtureRef(env, env.basic, 'plain')}`;
    state.credentials.update(env.basic.host, env.basic.credentials);
    state.name = `${fixtureRef(env, env.token, 'oci')}`;
    expect(state.registries).toEqual([env.token.host]);
    expect(state.credentials.forRegistries(state.registries)).toBeUndefined();
  });
});
