// Rate limits as Docker Hub reports them, emulated by the tamper proxy in front of a real registry:
// RateLimit-Limit / RateLimit-Remaining on manifests, and 429 twice with Retry-After, then success.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { observeRegistry, parseRateLimit, type RegistryNotice } from '../../src/core/registry/rate-limit.ts';
import { RateLimitState, windowText } from '../../src/ui/state/rate-limit.svelte.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';

const env = inject('registryEnv');
let front: TamperProxy;

beforeAll(async () => {
  front = await startTamperProxy(env.anon.url);
});
afterAll(async () => {
  await front?.close();
});

describe('rate limits', () => {
  it('reports RateLimit-* and each Retry-After wait, and the pull goes on by itself after two 429s', async () => {
    front.rules.manifestHeaders = { 'RateLimit-Limit': '100;w=21600', 'RateLimit-Remaining': '76;w=21600' };
    front.rules.failManifests = { status: 429, count: 2, retryAfter: '3' };
    const notices: RegistryNotice[] = [];
    const sleeps: number[] = [];
    const clock = 1_000_000;
    const transport = observeRegistry({ fetch: (u, i) => globalThis.fetch(u, i) }, (n) => notices.push(n), { now: () => clock });
    const client = new RegistryClient({ transport, retry: { now: () => clock, sleep: async (ms) => void sleeps.push(ms) } });
    const resolved = await new RemoteSource(client).resolve(parseReference(`${front.host}/${env.fixtures.oci.path}`));
    expect(resolved.digest).toBe(env.fixtures.oci.manifest.digest);
    // What the client waited is what the page counts down.
    expect(sleeps).toEqual([3000, 3000]);
    expect(notices.filter((n) => n.type === 'retry-wait')).toEqual([
      { type: 'retry-wait', registry: front.host, status: 429, until: clock + 3000 },
      { type: 'retry-wait', registry: front.host, status: 429, until: clock + 3000 },
    ]);
    expect(notices.filter((n) => n.type === 'rate-limit')).toEqual([
      { type: 'rate-limit', registry: front.host, limit: 100, remaining: 76, windowSeconds: 21600 },
    ]);
    expect(front.requests.filter((r) => r.action === 'fail')).toHaveLength(2);
  });

  it('parses the policy syntax, and ignores what is not one', () => {
    const h = (limit: string, remaining: string) => new Headers({ 'ratelimit-limit': limit, 'ratelimit-remaining': remaining });
    expect(parseRateLimit('r', h('100;w=21600', '0;w=21600'))).toEqual({
      type: 'rate-limit',
      registry: 'r',
      limit: 100,
      remaining: 0,
      windowSeconds: 21600,
    });
    expect(parseRateLimit('r', h('200', '199'))).toEqual({ type: 'rate-limit', registry: 'r', limit: 200, remaining: 199 });
    expect(parseRateLimit('r', h('lots', '1'))).toBeUndefined();
    expect(parseRateLimit('r', new Headers())).toBeUndefined();
    expect(windowText(21600)).toBe(' per 6 h');
  });

  it('the page state counts down to the retry and stops when the pull ends', () => {
    let now = 10_000;
    const state = new RateLimitState(() => now);
    state.apply({ type: 'retry-wait', registry: 'r', status: 429, until: 13_000 });
    expect([state.waiting, state.secondsLeft]).toEqual([true, 3]);
    now = 11_100;
    state.tick();
    expect(state.secondsLeft).toBe(2);
    now = 13_000;
    state.tick();
    expect(state.waiting).toBe(false);
    state.apply({ type: 'retry-wait', registry: 'r', status: 429, until: 20_000 });
    state.endWait();
    expect(state.waiting).toBe(false);
  });
});
