// Layer workers started by the page for the pull worker (layer-host.ts): jobs and replies over a
// real MessageChannel the page hands to the layer worker (the page itself sees none of them), a
// layer worker's crash reported to the pull worker's pool over the control port, and every layer
// worker stopped with the pull worker that asked for it. Scripted stand-ins for the Workers (the
// real ones run in the e2e suite).
import { describe, expect, it } from 'vitest';
import { hostLayerWorker } from '../../src/browser/layer-host.ts';
import { PortWorker } from '../../src/browser/layer-port.ts';
import { LayerPool } from '../../src/browser/layer-pool.ts';
import { PullBridge } from '../../src/browser/bridge.ts';
import type { FromLayerWorker, ToLayerWorker, ToLayerWorkerFromPage } from '../../src/browser/layer-protocol.ts';
import type { FromWorker, ToWorker } from '../../src/browser/protocol.ts';
import type { LayerJob } from '../../src/core/pull.ts';
import { LongshoreError } from '../../src/core/errors.ts';

class FakeLayerWorker {
  onmessage: ((e: MessageEvent) => void) | null = null;
  onerror: ((e: ErrorEvent) => void) | null = null;
  onmessageerror: ((e: MessageEvent) => void) | null = null;
  /** What the pull worker sent, over the port the page handed over. */
  received: ToLayerWorker[] = [];
  /** What the page itself sent: only the port. */
  fromPage: ToLayerWorkerFromPage[] = [];
  port: MessagePort | undefined;
  terminated = false;
  constructor(readonly script: (w: FakeLayerWorker, msg: ToLayerWorker) => void) {}
  postMessage(msg: ToLayerWorkerFromPage): void {
    this.fromPage.push(msg);
    this.port = msg.port;
    this.port.onmessage = (e: MessageEvent<ToLayerWorker>) => {
      this.received.push(e.data);
      this.script(this, e.data);
    };
  }
  reply(msg: FromLayerWorker): void {
    this.port!.postMessage(msg);
  }
  crash(message: string): void {
    this.onerror?.({ message, filename: 'layer-worker.js', lineno: 7, preventDefault: () => undefined } as ErrorEvent);
  }
  terminate(): void {
    this.terminated = true;
  }
}

const job: LayerJob = {
  reference: 'r.example/a@sha256:' + '0'.repeat(64),
  descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'1'.repeat(64)}`, size: 10 },
  diffId: undefined,
  label: 'layer 1',
  needCompressed: true,
  needUncompressed: false,
};
const config = { proxyBase: 'http://localhost' };
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
};

/** A pool in "the pull worker" whose workers the "page" starts over real ports. */
function hosted(script: (w: FakeLayerWorker, msg: ToLayerWorker) => void) {
  const started: FakeLayerWorker[] = [];
  const stops: (() => void)[] = [];
  const pool = new LayerPool(
    1,
    () =>
      new PortWorker((control, data) =>
        stops.push(
          hostLayerWorker(control, data, () => {
            const w = new FakeLayerWorker(script);
            started.push(w);
            return w as unknown as Worker;
          }),
        ),
      ) as unknown as Worker,
  );
  return { pool, started, stops };
}

describe('layer workers started by the page', () => {
  it("hands the page's layer worker a port: the job goes to it and its bytes and result come back, none through the page", async () => {
    const { pool, started, stops } = hosted((w, msg) => {
      if (msg.type !== 'run') return;
      w.reply({ type: 'bytes', id: msg.id, n: 4 });
      w.reply({ type: 'bytes', id: msg.id, n: 6 });
      w.reply({ type: 'done', id: msg.id });
    });
    const bytes: number[] = [];
    await pool.run(job, config, undefined, (n) => bytes.push(n), new AbortController().signal);
    expect(bytes).toEqual([4, 6]);
    expect(started).toHaveLength(1);
    expect(started[0]!.received[0]).toMatchObject({ type: 'run', job: { label: 'layer 1' } });
    expect(started[0]!.fromPage.map((m) => m.type)).toEqual(['connect']);
    expect(started[0]!.onmessage).toBeNull();
    stops.forEach((s) => s());
  });

  it("fails the job with WORKER when the page's layer worker crashes, and the next job gets a new one", async () => {
    let crash = true;
    const { pool, started, stops } = hosted((w, msg) => {
      if (msg.type !== 'run') return;
      if (crash) return w.crash('out of memory');
      w.reply({ type: 'done', id: msg.id });
    });
    const err = await pool.run(job, config, undefined, () => undefined, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LongshoreError);
    expect((err as LongshoreError).code).toBe('WORKER');
    expect((err as LongshoreError).message).toMatch(/The layer worker stopped: out of memory \(layer-worker\.js:7\)/);
    // WorkerRpc terminates the dead one: the page stops it.
    await until(() => started[0]!.terminated);
    crash = false;
    await pool.run(job, config, undefined, () => undefined, new AbortController().signal);
    expect(started).toHaveLength(2);
    stops.forEach((s) => s());
  });

  it('stops the layer workers a pull worker asked for when the bridge replaces it', async () => {
    const layers: FakeLayerWorker[] = [];
    const pulls: { reply: (m: FromWorker) => void; terminated: boolean }[] = [];
    const bridge = new PullBridge(config, {
      stallMs: 100,
      readyMs: 5000,
      factory: () => {
        const w = {
          onmessage: null as ((e: MessageEvent<FromWorker>) => void) | null,
          onerror: null,
          onmessageerror: null,
          terminated: false,
          reply(m: FromWorker) {
            this.onmessage?.({ data: m } as MessageEvent<FromWorker>);
          },
          postMessage(msg: ToWorker) {
            if (msg.type === 'init') queueMicrotask(() => w.reply({ type: 'ready' }));
            // The first pull worker asks for a layer worker, then goes silent.
            if (msg.type === 'resolve' && pulls.length === 1) {
              const control = new MessageChannel();
              const data = new MessageChannel();
              queueMicrotask(() => w.reply({ type: 'spawn-layer', control: control.port2, data: data.port2 }));
            }
          },
          terminate() {
            this.terminated = true;
          },
        };
        pulls.push(w);
        return w as unknown as Worker;
      },
      layerFactory: () => {
        const w = new FakeLayerWorker(() => undefined);
        layers.push(w);
        return w as unknown as Worker;
      },
    });
    await bridge.resolve('r.example/a/b:c').catch(() => undefined);
    expect(pulls.length).toBeGreaterThanOrEqual(2);
    expect(pulls[0]!.terminated).toBe(true);
    expect(layers).toHaveLength(1);
    expect(layers[0]!.terminated).toBe(true);
    bridge.terminate();
  });
});
