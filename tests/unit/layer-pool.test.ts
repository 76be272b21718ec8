// The layer pool's bookkeeping, with scripted stand-ins for Workers (the real ones run in the
// Chromium e2e tests).
import { describe, expect, it } from 'vitest';
import { LayerPool } from '../../src/browser/layer-pool.ts';
import { LongshoreError } from '../../src/core/errors.ts';
import type { FromLayerWorker, ToLayerWorker } from '../../src/browser/layer-protocol.ts';
import type { LayerJob } from '../../src/core/pull.ts';

class FakeWorker {
  onmessage: ((e: MessageEvent<FromLayerWorker>) => void) | null = null;
  onerror: ((e: ErrorEvent) => void) | null = null;
  received: ToLayerWorker[] = [];
  postMessage(msg: ToLayerWorker): void {
    this.received.push(msg);
  }
  reply(msg: FromLayerWorker): void {
    this.onmessage?.({ data: msg } as MessageEvent<FromLayerWorker>);
  }
  terminate(): void {}
}

const job = (n: number): LayerJob => ({
  reference: 'r.example/a@sha256:' + '0'.repeat(64),
  descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: 10 },
  diffId: undefined,
  label: `layer ${n}`,
  needCompressed: true,
  needUncompressed: false,
});
const config = { proxyBase: 'http://localhost' };

function pool(size: number) {
  const workers: FakeWorker[] = [];
  const p = new LayerPool(size, () => {
    const w = new FakeWorker();
    workers.push(w);
    return w as unknown as Worker;
  });
  return { p, workers };
}

describe('LayerPool', () => {
  it('gives each job to the least busy worker and routes byte counts back', async () => {
    const { p, workers } = pool(2);
    const bytes: number[][] = [[], [], []];
    const runs = [0, 1, 2].map((i) => p.run(job(i), config, undefined, (n) => bytes[i]!.push(n), new AbortController().signal));
    expect(workers.map((w) => w.received.length)).toEqual([2, 1]);
    const [first, third] = workers[0]!.received as Extract<ToLayerWorker, { type: 'run' }>[];
    const second = workers[1]!.received[0] as Extract<ToLayerWorker, { type: 'run' }>;
    workers[0]!.reply({ type: 'bytes', id: first!.id, n: 4 });
    workers[1]!.reply({ type: 'bytes', id: second.id, n: 7 });
    workers[0]!.reply({ type: 'done', id: first!.id });
    workers[1]!.reply({ type: 'done', id: second.id });
    workers[0]!.reply({ type: 'done', id: third!.id });
    await Promise.all(runs);
    expect(bytes).toEqual([[4], [7], []]);
    expect(third!.job.label).toBe('layer 2');
  });

  it("rejects with the worker's typed error", async () => {
    const { p, workers } = pool(1);
    const run = p.run(job(1), config, { 'r.example': { username: 'u', password: 'p' } }, () => {}, new AbortController().signal);
    const msg = workers[0]!.received[0] as Extract<ToLayerWorker, { type: 'run' }>;
    expect(msg.credentials).toEqual({ 'r.example': { username: 'u', password: 'p' } });
    expect(msg.auth).toBeUndefined();
    workers[0]!.reply({ type: 'error', id: msg.id, error: new LongshoreError('DIGEST_MISMATCH', 'bad', { retryable: true }).toJSON() });
    await expect(run).rejects.toMatchObject({ code: 'DIGEST_MISMATCH', retryable: true });
  });

  it("hands the pull worker's tokens to the layer worker with the job", async () => {
    const { p, workers } = pool(1);
    const auth = [{ registry: 'r.example', scope: 'repository:a:pull', header: 'Bearer t', expiresAt: 1e15 }];
    const run = p.run(job(1), config, undefined, () => {}, new AbortController().signal, auth);
    const msg = workers[0]!.received[0] as Extract<ToLayerWorker, { type: 'run' }>;
    expect(msg.auth).toEqual(auth);
    workers[0]!.reply({ type: 'done', id: msg.id });
    await run;
  });

  it('on abort tells the worker to stop and rejects at once', async () => {
    const { p, workers } = pool(1);
    const ac = new AbortController();
    const run = p.run(job(1), config, undefined, () => {}, ac.signal);
    ac.abort();
    await expect(run).rejects.toMatchObject({ code: 'ABORTED' });
    expect(workers[0]!.received.map((m) => m.type)).toEqual(['run', 'cancel']);
  });
});
