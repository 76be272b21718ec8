// Every wait has a bound. The page watches each request it sent a worker: any message about it
// (an activity, a phase, progress bytes) counts as progress; a request with none for `stallMs`
// fails with a STALLED error naming its stage and what it waited for, and the worker is replaced.
import { ErrorCode, LongshoreError } from '../core/errors.ts';
import type { PullEvent } from '../core/progress.ts';

export const DEFAULT_STALL_MS = 30_000;
export const DEFAULT_READY_MS = 15_000;

/** What a registry request waits for, in words (distribution-spec §3 endpoints; anything else is a token realm). */
export function describeRequest(url: string): string {
  const u = new URL(url);
  const proxied = u.pathname.match(/^\/proxy\/([^/]+)(\/.*)$/);
  const host = proxied ? proxied[1]! : u.host;
  const path = proxied ? proxied[2]! : u.pathname;
  const m = path.match(/^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/);
  if (!m) return `a token from ${host}`;
  const short = (d: string) => (d.startsWith('sha256:') ? `${d.slice(0, 19)}…` : d);
  const ref = m[3]!.startsWith('sha256:') ? `${m[1]}@${short(m[3]!)}` : `${m[1]}:${m[3]}`;
  return m[2] === 'manifests' ? `the manifest of ${ref} from ${host}` : `blob ${short(m[3]!)} of ${m[1]} from ${host}`;
}

interface Watched {
  stage: string;
  detail: string;
  at: number;
  /** The bound for the current wait (an activity may set a tighter one than stallMs). */
  bound: number;
  progressed: boolean;
  layers: Map<number, { label: string; done: number; size: number; state: string }>;
}

const STAGE_DETAIL: Record<string, string> = {
  'looking up the name': 'waiting for the pull worker to start the look-up',
  'resolving the manifest': 'waiting for the pull worker to start resolving',
  'downloading layers': 'waiting for layer bytes',
  'assembling the archive': "waiting for the browser's storage (IndexedDB) to hand back the stored layers",
};

export class StallWatch {
  readonly #watched = new Map<number, Watched>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly stallMs: number,
    readonly onStall: (id: number, error: LongshoreError) => void,
    readonly now: () => number = () => Date.now(),
  ) {}

  watch(id: number, stage: string): void {
    this.#watched.set(id, {
      stage,
      detail: STAGE_DETAIL[stage] ?? 'waiting',
      at: this.now(),
      bound: this.stallMs,
      progressed: false,
      layers: new Map(),
    });
    this.#timer ??= setInterval(() => this.check(), Math.max(50, Math.min(500, this.stallMs / 4)));
  }

  unwatch(id: number): void {
    this.#watched.delete(id);
    if (this.#watched.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  stage(id: number, stage: string): void {
    const w = this.#watched.get(id);
    if (!w) return;
    w.stage = stage;
    w.detail = STAGE_DETAIL[stage] ?? w.detail;
    w.at = this.now();
    w.bound = this.stallMs;
  }

  activity(id: number, detail: string, boundMs?: number): void {
    const w = this.#watched.get(id);
    if (!w) return;
    w.detail = detail;
    w.at = this.now();
    w.bound = Math.min(this.stallMs, boundMs ?? this.stallMs);
  }

  progress(id: number, events: PullEvent[]): void {
    const w = this.#watched.get(id);
    if (!w) return;
    w.at = this.now();
    w.bound = this.stallMs;
    w.progressed = true;
    for (const e of events) {
      if (e.type === 'plan') {
        w.layers.clear();
        for (const l of e.layers)
          w.layers.set(l.index, {
            label: `layer ${l.index + 1}/${e.layers.length} (${l.digest.slice(0, 19)}…)`,
            done: 0,
            size: l.size,
            state: l.cached ? 'cached' : 'waiting',
          });
      } else if (e.type === 'layer') {
        const l = w.layers.get(e.index);
        if (l) Object.assign(l, { done: e.done, state: e.state });
      }
    }
  }

  /** Fail every request that made no progress for stallMs. */
  check(): void {
    const t = this.now();
    for (const [id, w] of this.#watched) {
      if (t - w.at < w.bound) continue;
      this.unwatch(id);
      this.onStall(id, stalledError(w, w.bound));
    }
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }
}

function stalledError(w: Watched, stallMs: number): LongshoreError {
  const inFlight = [...w.layers.values()].filter((l) => l.state === 'downloading');
  const waitedFor =
    w.stage === 'downloading layers' && inFlight.length
      ? `waiting for the bytes of ${inFlight.map((l) => `${l.label}, ${l.done} of ${l.size} bytes`).join('; ')}`
      : w.detail;
  const seconds = Math.round(stallMs / 100) / 10;
  return new LongshoreError(ErrorCode.Stalled, `No progress for ${seconds} s while ${w.stage}: ${waitedFor}.`, {
    hint: 'The registry, the proxy or the browser stopped answering. Press Pull to try again (layers already stored are kept).',
    retryable: true,
    // `progressed`: whether any layer plan or bytes arrived (the bridge retries once when none did).
    data: { stage: w.stage, waitedFor, stallMs, progressed: w.progressed },
  });
}
