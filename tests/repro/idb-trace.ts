// An in-page tracer for IndexedDB, Web Locks and StorageManager calls, put into the page and (by
// wrapping the Worker constructor) into every module worker it starts, nested ones included. Each
// call and each of its outcomes is posted on the BroadcastChannel 'idb-trace' with a timestamp, so
// a request that never completes shows up as an entry with no outcome.

/** Runs in the page or a worker; `self` is its own source text, to pass on to nested workers. */
function tracer(selfSource: string, trace: boolean): void {
  const G = globalThis as unknown as Record<string, unknown> & typeof globalThis;
  if (G['__idbTrace']) return;
  G['__idbTrace'] = true;
  const isPage = typeof document !== 'undefined';
  const who = isPage ? 'page' : `${(G as unknown as { name?: string }).name || 'worker'}#${Math.random().toString(36).slice(2, 6)}`;
  const channel = new BroadcastChannel('idb-trace');
  let seq = 0;
  const log = (ev: string, detail: string, id: string) =>
    channel.postMessage({ t: Math.round((performance.timeOrigin + performance.now()) * 10) / 10, who, ev, detail, id });
  log('start', String(G.location?.href ?? ''), `${who}:s`);

  const NativeWorker = G.Worker;
  if (NativeWorker) {
    const moduleText = `var __name = (f) => f;\n(${selfSource})(${JSON.stringify(selfSource)}, ${trace});`;
    const traceUrl = URL.createObjectURL(new Blob([moduleText], { type: 'text/javascript' }));
    G.Worker = class extends NativeWorker {
      constructor(url: string | URL, opts?: WorkerOptions) {
        const real = new URL(url, G.location.href).href;
        const wrapped = opts?.type === 'module' && !real.startsWith('blob:');
        if (wrapped) log('worker:constructing', `${opts?.name ?? ''}`, `${who}:w`);
        const target = wrapped
          ? URL.createObjectURL(
              new Blob([`import ${JSON.stringify(traceUrl)};\nimport ${JSON.stringify(real)};\n`], { type: 'text/javascript' }),
            )
          : url;
        if (wrapped) log('worker:url-made', `${opts?.name ?? ''}`, `${who}:w`);
        super(target, opts);
        if (wrapped) log('worker', `${opts?.name ?? ''} ${real}`, `${who}:w${++seq}`);
      }
    } as typeof Worker;
  }
  if (!trace) return;

  const open = IDBFactory.prototype.open;
  IDBFactory.prototype.open = function (this: IDBFactory, name: string, version?: number) {
    const id = `${who}:o${++seq}`;
    log('open', `${name}${version !== undefined ? `@${version}` : ''}`, id);
    const req = version === undefined ? open.call(this, name) : open.call(this, name, version);
    for (const e of ['success', 'error', 'blocked', 'upgradeneeded'])
      req.addEventListener(e, () => {
        log(`open:${e}`, name, id);
        if (e === 'success') {
          const db = req.result;
          db.addEventListener('versionchange', () => log('db:versionchange', name, id));
          db.addEventListener('close', () => log('db:close', name, id));
        }
      });
    return req;
  } as typeof IDBFactory.prototype.open;

  const tx = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
    const t = tx.apply(this, args);
    const id = `${who}:t${++seq}`;
    log('tx', `${this.name} ${args[1] ?? 'readonly'}`, id);
    for (const e of ['complete', 'abort', 'error']) t.addEventListener(e, () => log(`tx:${e}`, this.name, id));
    return t;
  };

  const locks = (G.navigator as Navigator | undefined)?.locks;
  if (locks) {
    const request = LockManager.prototype.request;
    LockManager.prototype.request = function (this: LockManager, name: string, ...rest: unknown[]) {
      const id = `${who}:l${++seq}`;
      const options = (rest.length > 1 ? rest[0] : {}) as LockOptions;
      const cb = rest[rest.length - 1] as (lock: Lock | null) => unknown;
      log('lock', `${name} ${options.mode ?? 'exclusive'}${options.ifAvailable ? ' ifAvailable' : ''}`, id);
      const wrapped = (lock: Lock | null) => {
        log(lock ? 'lock:granted' : 'lock:unavailable', name, id);
        return cb(lock);
      };
      const p = request.call(this, name, options, wrapped);
      p.then(
        () => log('lock:released', name, id),
        (e: unknown) => log('lock:failed', `${name} ${String(e)}`, id),
      );
      return p;
    } as typeof LockManager.prototype.request;
  }

  const storage = (G.navigator as Navigator | undefined)?.storage;
  if (storage) {
    for (const m of ['estimate', 'persist', 'persisted'] as const) {
      const f = StorageManager.prototype[m] as () => Promise<unknown>;
      (StorageManager.prototype as unknown as Record<string, unknown>)[m] = function (this: StorageManager) {
        const id = `${who}:s${++seq}`;
        log(`storage.${m}`, '', id);
        const p = f.call(this);
        p.then(
          () => log(`storage.${m}:done`, '', id),
          () => log(`storage.${m}:failed`, '', id),
        );
        return p;
      };
    }
  }
}

/** A script for the page (puppeteer's evaluateOnNewDocument) that installs the tracer; `trace` false only counts workers. */
export function tracerScript(trace: boolean): string {
  const src = tracer.toString();
  // tsx/esbuild may wrap inner functions in __name(…): give the page and the workers one.
  return `var __name = (f) => f;
  (() => {
    window.__trace = [];
    new BroadcastChannel('idb-trace').onmessage = (e) => window.__trace.push(e.data);
    try { (${src})(${JSON.stringify(src)}, ${trace}); } catch (e) { window.__traceError = String(e && e.stack || e); }
  })();`;
}

export interface TraceEntry {
  t: number;
  who: string;
  ev: string;
  detail: string;
  id: string;
}

/** Calls with no outcome: opens without success/error, transactions without complete/abort, locks never granted. */
export function unanswered(trace: TraceEntry[]): TraceEntry[] {
  const endings = new Set(['open:success', 'open:error', 'tx:complete', 'tx:abort']);
  const ended = new Set(trace.filter((e) => endings.has(e.ev) || /^storage\.\w+:/.test(e.ev)).map((e) => e.id));
  const granted = new Set(trace.filter((e) => e.ev === 'lock:granted' || e.ev === 'lock:unavailable').map((e) => e.id));
  return trace.filter((e) => {
    if (e.ev === 'open' || e.ev === 'tx' || e.ev.startsWith('storage.')) return !e.ev.includes(':') && !ended.has(e.id);
    if (e.ev === 'lock') return !granted.has(e.id);
    return false;
  });
}
