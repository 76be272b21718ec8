// The UI state class, driven with a scripted bridge: no DOM, no worker.
import { describe, expect, it, vi } from 'vitest';
import { flushSync } from 'svelte';
import { LOOK_UP_DELAY_MS, PullState, type BridgeLike } from '../../src/ui/state/pull-state.svelte.ts';
import { LongshoreError, AbortedError } from '../../src/core/errors.ts';
import type { PullOutcome, PullRequest, Phase } from '../../src/browser/protocol.ts';
import type { PullEvent } from '../../src/core/progress.ts';

const digest = (c: string) => `sha256:${c.repeat(64)}`;

function scriptedBridge(
  run: (
    req: PullRequest,
    hooks: { signal?: AbortSignal; onPhase?: (p: Phase) => void; onProgress?: (e: PullEvent[]) => void },
  ) => Promise<PullOutcome>,
): BridgeLike & { requests: PullRequest[] } {
  const requests: PullRequest[] = [];
  return {
    requests,
    resolve: async () => ({
      kind: 'index',
      reference: 'x',
      digest: digest('a'),
      mediaType: 'm',
      platforms: [
        { label: 'linux/amd64', digest: digest('b') },
        { label: 'linux/arm64', digest: digest('c') },
      ],
    }),
    pull: (req, hooks = {}) => {
      requests.push(req);
      return run(req, hooks);
    },
  };
}

const outcome: PullOutcome = {
  blob: new Blob(['x']),
  saved: { kind: 'blob', name: 'alpine_latest.tar', bytes: 1 },
  fileName: 'alpine_latest.tar',
  size: 1,
  format: 'legacy',
  reference: 'docker.io/library/alpine:latest',
  digest: digest('d'),
  platform: 'linux/amd64',
};

describe('PullState', () => {
  it('validates the name as you type', () => {
    const s = new PullState(scriptedBridge(async () => outcome));
    s.name = 'Alpine';
    flushSync();
    expect(s.nameError?.message).toMatch(/Alpine/);
    expect(s.canPull).toBe(false);
    s.name = 'alpine';
    expect(s.nameError).toBeUndefined();
    expect(s.canPull).toBe(true);
  });

  it('takes several names at once and says which one is wrong', () => {
    const s = new PullState(scriptedBridge(async () => outcome));
    s.name = 'alpine, ghcr.io/o/r:v1  busybox';
    expect(s.refs.map((r) => r.canonical)).toEqual([
      'docker.io/library/alpine:latest',
      'ghcr.io/o/r:v1',
      'docker.io/library/busybox:latest',
    ]);
    expect(s.canPull).toBe(true);
    s.name = 'alpine Bad:1';
    expect(s.nameError?.message).toMatch(/^Name 2 of 2: .*Bad/);
    expect(s.canPull).toBe(false);
  });

  it('offers the index platforms after resolving', async () => {
    const s = new PullState(scriptedBridge(async () => outcome));
    s.name = 'multi:latest';
    await s.resolve();
    expect(s.platformOptions).toEqual(['linux/amd64', 'linux/arm64']);
  });

  it('looks the name up once typing pauses, and not at all once a pull has started (the pull resolves it)', async () => {
    vi.useFakeTimers();
    try {
      const bridge = scriptedBridge(async () => outcome);
      const looked: string[] = [];
      const resolve = bridge.resolve;
      bridge.resolve = (reference, options) => {
        looked.push(reference);
        return resolve(reference, options);
      };
      const s = new PullState(bridge);
      s.name = 'alp';
      s.resolveSoon();
      await vi.advanceTimersByTimeAsync(LOOK_UP_DELAY_MS / 2);
      s.name = 'alpine';
      s.resolveSoon();
      await vi.advanceTimersByTimeAsync(LOOK_UP_DELAY_MS);
      expect(looked).toEqual(['docker.io/library/alpine:latest']);

      // Pull pressed before typing paused: the waiting look-up would ask the registry again mid-pull
      // (seen as an extra manifest and config GET in the e2e request logs).
      s.name = 'busybox';
      s.resolveSoon();
      await s.pull();
      await vi.advanceTimersByTimeAsync(LOOK_UP_DELAY_MS * 2);
      expect(s.status).toBe('ready');
      expect(looked).toEqual(['docker.io/library/alpine:latest']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('runs a pull through its phases and folds progress into rows and totals', async () => {
    let t = 0;
    const bridge = scriptedBridge(async (_req, { onPhase, onProgress }) => {
      onPhase!('resolving');
      onProgress!([
        {
          type: 'plan',
          totalBytes: 300,
          layers: [
            { index: 0, digest: digest('1'), mediaType: 'm', size: 100, cached: true },
            { index: 1, digest: digest('2'), mediaType: 'm', size: 200, cached: false },
          ],
        },
      ]);
      onPhase!('downloading');
      t = 1000;
      onProgress!([{ type: 'layer', index: 1, digest: digest('2'), state: 'downloading', done: 50, total: 200 }]);
      t = 2000;
      onProgress!([{ type: 'layer', index: 1, digest: digest('2'), state: 'downloading', done: 150, total: 200 }]);
      expect(s.status).toBe('downloading');
      expect(s.layers[1]!.rate).toBeCloseTo(100, 0);
      expect(s.doneBytes).toBe(250);
      expect(s.percent).toBeCloseTo(83.3, 0);
      expect(s.rate).toBeCloseTo(75, 0); // 150 downloaded bytes in 2 s; cached bytes do not count
      expect(s.eta).toBeCloseTo(50 / 75, 1);
      onProgress!([{ type: 'layer', index: 1, digest: digest('2'), state: 'done', done: 200, total: 200 }]);
      onPhase!('assembling');
      return outcome;
    });
    const s = new PullState(bridge, () => t);
    s.name = 'alpine';
    s.platform = 'linux/arm64';
    await s.pull();
    expect(s.status).toBe('ready');
    expect(s.outcome?.fileName).toBe('alpine_latest.tar');
    expect(bridge.requests[0]).toMatchObject({
      references: ['docker.io/library/alpine:latest'],
      platform: 'linux/arm64',
      format: 'docker',
    });
    expect(s.layers.map((l) => l.state)).toEqual(['cached', 'done']);
  });

  it('shows a failure with its code and hint, and offers no download', async () => {
    const s = new PullState(
      scriptedBridge(async () => {
        throw new LongshoreError('MANIFEST_UNKNOWN', 'manifest x: 404', { hint: 'Check the tag.' });
      }),
    );
    s.name = 'alpine:nope';
    await s.pull();
    expect(s.status).toBe('failed');
    expect(s.error).toEqual({ code: 'MANIFEST_UNKNOWN', message: 'manifest x: 404', hint: 'Check the tag.' });
    expect(s.outcome).toBeUndefined();
  });

  it('cancel returns to a quiet cancelled state without an error or a download', async () => {
    let release!: () => void;
    const s = new PullState(
      scriptedBridge(
        (_req, { signal }) =>
          new Promise((resolve, reject) => {
            release = () => resolve(outcome);
            signal!.addEventListener('abort', () => reject(new AbortedError()));
          }),
      ),
    );
    s.name = 'alpine';
    const p = s.pull();
    expect(s.busy).toBe(true);
    s.cancel();
    release();
    await p;
    expect(s.status).toBe('cancelled');
    expect(s.error).toBeUndefined();
    expect(s.outcome).toBeUndefined();
  });

  it('passes credentials for the reference registry only when given', async () => {
    const bridge = scriptedBridge(async () => outcome);
    const s = new PullState(bridge);
    s.name = '127.0.0.1:5000/private/x';
    await s.pull();
    expect(bridge.requests[0]!.credentials).toBeUndefined();
    s.credentials.update('127.0.0.1:5000', { username: 'bob', password: 'builder' });
    await s.pull();
    expect(bridge.requests[1]!.credentials).toEqual({ '127.0.0.1:5000': { username: 'bob', password: 'builder' } });
  });
});
