// The page's bound on every wait (bridge.ts + watchdog.ts), with scripted stand-ins for the pull
// worker (the real one runs in the e2e suite, stall.test.ts).
import { describe, expect, it } from 'vitest';
import { PullBridge } from '../../src/browser/bridge.ts';
import { describeRequest } from '../../src/browser/watchdog.ts';
import type { FromWorker, ToWorker } from '../../src/browser/protocol.ts';
import { LongshoreError } from '../../src/core/errors.ts';

class FakeWorker {
  onmessage: ((e: MessageEvent<FromWorker>) => void) | null = null;
  onerror: ((e: ErrorEvent) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  received: ToWorker[] = [];
  terminated = false;
  constructor(readonly script: (w: FakeWorker, msg: ToWorker) => void = () => undefined) {}
  postMessage(msg: ToWorker): void {
    this.received.push(msg);
    queueMicrotask(() => this.script(this, msg));
  }
  reply(msg: FromWorker): void {
    this.onmessage?.({ data: msg } as MessageEvent<FromWorker>);
  }
  terminate(): void {
    this.terminated = true;
  }
}

const ready = (w: FakeWorker, msg: ToWorker) => {
  if (msg.type === 'init') w.reply({ type: 'ready' });
};
const config = { proxyBase: 'http://localhost' };

function bridgeWith(scripts: ((w: FakeWorker, msg: ToWorker) => void)[], options: { stallMs?: number; readyMs?: number } = {}) {
  const workers: FakeWorker[] = [];
  const bridge = new PullBridge(config, {
    stallMs: 100,
    readyMs: 5000,
    ...options,
    factory: () => {
      const w = new FakeWorker(scripts[Math.min(workers.length, scripts.length - 1)]);
      workers.push(w);
      return w as unknown as Worker;
    },
  });
  return { bridge, workers };
}

describe('the pull bridge watchdog', () => {
  it('fails a request that makes no progress with STALLED, its stage and what it waited for (after one fresh-worker retry)', async () => {
    const silent = (w: FakeWorker, msg: ToWorker) => {
      ready(w, msg);
      if (msg.type === 'resolve') w.reply({ type: 'activity', id: msg.id, detail: 'waiting for the manifest of a/b:c from r.example' });
    };
    const { bridge, workers } = bridgeWith([silent]);
    const err = await bridge.resolve('r.example/a/b:c').catch((e: LongshoreError) => e);
    expect(err).toBeInstanceOf(LongshoreError);
    expect((err as LongshoreError).code).toBe('STALLED');
    expect((err as LongshoreError).message).toMatch(
      /^No progress for 0\.1 s while looking up the name: waiting for the manifest of a\/b:c from r\.example\.$/,
    );
    expect((err as LongshoreError).retryable).toBe(true);
    // The stuck worker was replaced and the request sent once more before giving up.
    expect(workers).toHaveLength(2);
    expect(workers[0]!.terminated).toBe(true);
  });

  it('answers from a fresh worker when the first never answers before any progress', async () => {
    const answers = (w: FakeWorker, msg: ToWorker) => {
      ready(w, msg);
      if (msg.type === 'resolve')
        w.reply({
          type: 'resolved',
          id: msg.id,
          summary: { kind: 'image', reference: 'x', digest: 'sha256:0', mediaType: 'm', platforms: [] },
        });
    };
    const { bridge, workers } = bridgeWith([ready, answers]);
    await expect(bridge.resolve('r.example/a:b')).resolves.toMatchObject({ reference: 'x' });
    expect(workers).toHaveLength(2);
  });

  it('does not repeat a pull that already received layers: the stall names the layer and its bytes', async () => {
    const stallsMidLayer = (w: FakeWorker, msg: ToWorker) => {
      ready(w, msg);
      if (msg.type !== 'pull') return;
      w.reply({ type: 'phase', id: msg.id, phase: 'downloading' });
      w.reply({
        type: 'progress',
        id: msg.id,
        events: [
          {
            type: 'plan',
            layers: [{ index: 0, digest: `sha256:${'a'.repeat(64)}`, mediaType: 'm', size: 100, cached: false }],
            totalBytes: 100,
          },
          { type: 'layer', index: 0, digest: `sha256:${'a'.repeat(64)}`, done: 40, size: 100, state: 'downloading' },
        ] as never,
      });
    };
    const { bridge, workers } = bridgeWith([stallsMidLayer]);
    const err = (await bridge.pull({ references: ['r.example/a:b'], format: 'docker' }).catch((e: LongshoreError) => e)) as LongshoreError;
    expect(err.code).toBe('STALLED');
    expect(err.message).toMatch(/while downloading layers: waiting for the bytes of layer 1\/1 \(sha256:aaaaaaaaaaaa…\), 40 of 100 bytes/);
    expect(workers).toHaveLength(1);
  });

  it('reports a worker that never says it is ready, and one that crashes', async () => {
    const { bridge } = bridgeWith([() => undefined], { stallMs: 10_000, readyMs: 50 });
    const err = (await bridge.resolve('r.example/a:b').catch((e: LongshoreError) => e)) as LongshoreError;
    expect(err.code).toBe('WORKER');
    expect(err.message).toMatch(/did not start within/);

    const { bridge: b2, workers } = bridgeWith([ready], { stallMs: 10_000 });
    const pending = b2.resolve('r.example/a:b').catch((e: LongshoreError) => e);
    await new Promise((r) => setTimeout(r, 10));
    workers[0]!.onerror?.({ message: 'boom', filename: 'worker.js', lineno: 3, preventDefault() {} } as unknown as ErrorEvent);
    const crash = (await pending) as LongshoreError;
    expect(crash.code).toBe('WORKER');
    expect(crash.message).toMatch(/The pull worker stopped: boom \(worker\.js:3\)/);
  });

  it('describes registry requests in words', () => {
    expect(describeRequest('http://h:8080/proxy/r.example:5000/v2/a/b/manifests/v1')).toBe('the manifest of a/b:v1 from r.example:5000');
    expect(describeRequest(`http://h/proxy/r.example/v2/a/blobs/sha256:${'b'.repeat(64)}`)).toBe(
      'blob sha256:bbbbbbbbbbbb… of a from r.example',
    );
    expect(describeRequest('http://h/proxy/auth.example/token?scope=x')).toBe('a token from auth.example');
  });
});
