// The page's state for one pull: the name as typed (parsed as you type), platform and format
// choice, progress per layer and overall, and the outcome. It talks to the worker only through
// the bridge it is given, so it is tested without a DOM or a worker.
import { tryParseReference, type ImageReference } from '../../core/reference.ts';
import { InvalidReferenceError } from '../../core/errors.ts';
import { DEFAULT_FORMAT, formatById } from '../../core/formats/index.ts';
import { ErrorCode, LongshoreError } from '../../core/errors.ts';
import type { PullEvent, LayerState } from '../../core/progress.ts';
import type { PullOutcome, PullRequest, ResolveSummary, SaveProgress } from '../../browser/protocol.ts';
import type { PullHooks } from '../../browser/bridge.ts';
import type { Saver, SavePath } from '../../browser/save/choose.ts';
import type { SaveKind } from '../../browser/save/types.ts';
import type { JournalEntry } from '../../browser/journal.ts';
import { archiveFileName } from '../../browser/save/file-name.ts';
import type { Credentials } from '../../core/registry/auth.ts';
import { CredentialsState } from './credentials.svelte.ts';
import { RateLimitState } from './rate-limit.svelte.ts';

export type Status = 'idle' | 'resolving' | 'downloading' | 'assembling' | 'ready' | 'failed' | 'cancelled';

export interface BridgeLike {
  resolve(reference: string, options?: { signal?: AbortSignal; credentials?: Record<string, Credentials> }): Promise<ResolveSummary>;
  pull(request: PullRequest, options?: { signal?: AbortSignal } & PullHooks): Promise<PullOutcome>;
}

export interface LayerRow {
  index: number;
  digest: string;
  mediaType: string;
  size: number;
  done: number;
  state: LayerState;
  /** Bytes per second, smoothed. */
  rate: number;
}

export interface ShownError {
  code: string;
  message: string;
  hint: string | undefined;
}

const RATE_SMOOTHING = 0.3;
/** Typing pauses this long before the name is looked up. */
export const LOOK_UP_DELAY_MS = 400;

export class PullState {
  name = $state('');
  platform = $state('linux/amd64');
  format = $state(DEFAULT_FORMAT.id);
  /** Keep every platform of an index (formats that can: oci). */
  allPlatforms = $state(false);
  /** Where the archive goes (see browser/save/choose.ts); the first path offered by default. */
  saveKind = $state<SaveKind>('blob');
  /** Keep the pulled blobs in this browser's cache (off: they only pass through it). */
  keepCopy = $state(true);
  /** The path the current pull saves with (after any fallback), and how far it got. */
  savePath = $state.raw<SavePath | undefined>(undefined);
  saveProgress = $state.raw<SaveProgress | undefined>(undefined);
  saveNote = $state<string | undefined>(undefined);

  status = $state<Status>('idle');
  layers = $state.raw<LayerRow[]>([]);
  error = $state.raw<ShownError | undefined>(undefined);
  outcome = $state.raw<PullOutcome | undefined>(undefined);
  summary = $state.raw<ResolveSummary | undefined>(undefined);
  summaryError = $state.raw<ShownError | undefined>(undefined);
  /** What the pull went on despite (a foreign layer whose source is not allowed). */
  warnings = $state.raw<ShownError[]>([]);
  resolving = $state(false);
  startedAt = $state(0);
  elapsed = $state(0);
  /** Rate limits the registries report, and the countdown to a retry they asked for. */
  readonly rateLimit = new RateLimitState();

  /** Several names may be given at once, separated by spaces or commas (crane pull IMAGE… TARBALL). */
  readonly names = $derived(this.name.split(/[\s,]+/).filter(Boolean));
  readonly parsedAll = $derived(this.names.map((n) => tryParseReference(n)));
  readonly refs = $derived(this.parsedAll.flatMap((p): ImageReference[] => (p.ok ? [p.ref] : [])));
  /** Each registry host the names reach, once: one sign-in per registry. */
  readonly registries = $derived([...new Set(this.refs.map((r) => r.registry))]);
  /** The first name's result; with several names, an error names which one is wrong. */
  readonly parsed = $derived.by(() => {
    const bad = this.parsedAll.findIndex((p) => !p.ok);
    if (bad < 0) return this.parsedAll[0];
    const first = this.parsedAll[bad]!;
    if (first.ok || this.names.length === 1) return first;
    const e = first.error;
    return {
      ok: false as const,
      error: new InvalidReferenceError(`Name ${bad + 1} of ${this.names.length}: ${e.message}`, e.hint ?? '', e.data),
    };
  });
  readonly nameError = $derived(this.parsed && !this.parsed.ok ? this.parsed.error : undefined);
  readonly formatInfo = $derived(formatById(this.format) ?? DEFAULT_FORMAT);
  readonly multiImageError = $derived(
    this.names.length > 1 && !this.formatInfo.multiImage
      ? `The ${this.formatInfo.label} format holds one image; choose docker, legacy or tarball for ${this.names.length} names.`
      : undefined,
  );
  readonly busy = $derived(this.status === 'resolving' || this.status === 'downloading' || this.status === 'assembling');
  readonly canPull = $derived(this.parsed?.ok === true && !this.busy && !this.multiImageError);
  readonly platformOptions = $derived(
    this.summary?.kind === 'index'
      ? this.summary.platforms.map((p) => p.label)
      : ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/386', 'linux/ppc64le', 'linux/s390x'],
  );
  readonly totalBytes = $derived(this.layers.reduce((n, l) => n + l.size, 0));
  readonly doneBytes = $derived(this.layers.reduce((n, l) => n + l.done, 0));
  readonly cachedBytes = $derived(this.layers.filter((l) => l.state === 'cached').reduce((n, l) => n + l.size, 0));
  readonly percent = $derived(this.totalBytes > 0 ? Math.min(100, (this.doneBytes / this.totalBytes) * 100) : 0);
  readonly rate = $derived(this.elapsed > 0 ? (this.doneBytes - this.cachedBytes) / this.elapsed : 0);
  readonly eta = $derived(this.rate > 0 ? (this.totalBytes - this.doneBytes) / this.rate : Number.NaN);
  readonly savePaths: SavePath[];

  #pullAbort: AbortController | undefined;
  #resolveAbort: AbortController | undefined;
  #resolveTimer: ReturnType<typeof setTimeout> | undefined;
  #samples = new Map<number, { t: number; done: number }>();

  constructor(
    private readonly bridge: BridgeLike,
    private readonly now: () => number = () => performance.now(),
    readonly credentials: CredentialsState = new CredentialsState(),
    private readonly saver?: Saver,
  ) {
    this.savePaths = saver?.paths ?? [];
    this.saveKind = this.savePaths[0]?.kind ?? 'blob';
  }

  /** Each registry gets only the pair typed for it (never one pair for every registry named). */
  #credentials(): Record<string, Credentials> | undefined {
    if (!this.parsed?.ok) return undefined;
    return this.credentials.forRegistries(this.registries);
  }

  /** Look the name up once typing pauses (each keystroke starts the wait again), to offer an index's real platforms. */
  resolveSoon(): void {
    clearTimeout(this.#resolveTimer);
    this.#resolveTimer = setTimeout(() => {
      this.#resolveTimer = undefined;
      void this.resolve();
    }, LOOK_UP_DELAY_MS);
  }

  /** Look the name up (manifest only) to learn whether it is an index and which platforms it has. */
  async resolve(): Promise<void> {
    clearTimeout(this.#resolveTimer);
    this.#resolveTimer = undefined;
    this.#resolveAbort?.abort();
    this.summary = undefined;
    this.summaryError = undefined;
    if (!this.parsed?.ok || this.names.length !== 1) return;
    const ac = new AbortController();
    this.#resolveAbort = ac;
    this.resolving = true;
    try {
      const credentials = this.#credentials();
      const summary = await this.bridge.resolve(this.parsed.ref.canonical, { signal: ac.signal, ...(credentials ? { credentials } : {}) });
      if (ac.signal.aborted) return;
      this.summary = summary;
      const labels = summary.platforms.map((p) => p.label);
      if (summary.kind === 'index' && labels.length && !labels.includes(this.platform)) {
        this.platform = labels.includes('linux/amd64') ? 'linux/amd64' : labels[0]!;
      }
    } catch (err) {
      if (!ac.signal.aborted) this.summaryError = shown(err);
    } finally {
      if (this.#resolveAbort === ac) this.resolving = false;
    }
  }

  get chosenSavePath(): SavePath | undefined {
    return this.savePaths.find((p) => p.kind === this.saveKind);
  }

  /** Pull again what an unfinished pull asked for (stored bytes are not fetched again). */
  resume(entry: JournalEntry): Promise<void> {
    this.name = entry.references.join(' ');
    this.format = entry.format;
    if (entry.platform) this.platform = entry.platform;
    this.allPlatforms = entry.allPlatforms ?? false;
    this.keepCopy = entry.keepCopy;
    if (this.savePaths.some((p) => p.kind === entry.save)) this.saveKind = entry.save;
    return this.pull(entry.id);
  }

  async pull(journalId?: string): Promise<void> {
    if (!this.parsed?.ok || this.busy) return;
    // Before any await: a file or folder picker needs the click's user gesture.
    const preparing = this.saver?.prepare(this.saveKind, archiveFileName(this.refs));
    // The pull resolves the name itself: a look-up still waiting for typing to pause would only
    // ask the registry again (a manifest GET counts against Docker Hub's pull limit), mid-pull.
    clearTimeout(this.#resolveTimer);
    this.#resolveTimer = undefined;
    this.#resolveAbort?.abort();
    const prepared = preparing ? await preparing : undefined;
    if (preparing && !prepared) return;
    this.savePath = prepared?.path;
    this.saveNote = prepared?.note;
    this.saveProgress = undefined;
    const ac = new AbortController();
    this.#pullAbort = ac;
    this.status = 'resolving';
    this.error = undefined;
    this.outcome = undefined;
    this.layers = [];
    this.warnings = [];
    this.rateLimit.mirrors = [];
    this.#samples.clear();
    this.startedAt = this.now();
    this.elapsed = 0;
    const credentials = this.#credentials();
    try {
      const outcome = await this.bridge.pull(
        {
          references: this.refs.map((r) => r.canonical),
          platform: this.platform,
          format: this.format,
          ...(this.allPlatforms && (this.formatInfo.allPlatforms || prepared?.target.kind === 'folder') ? { allPlatforms: true } : {}),
          ...(credentials ? { credentials } : {}),
          ...(prepared ? { save: prepared.target } : {}),
          keepCopy: this.keepCopy,
          journalId: journalId ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
        },
        {
          ...prepared?.hooks,
          signal: ac.signal,
          onSaveProgress: (progress) => {
            if (!ac.signal.aborted) this.saveProgress = progress;
          },
          onPhase: (phase) => {
            if (!ac.signal.aborted) this.status = phase;
          },
          onProgress: (events) => {
            if (!ac.signal.aborted) this.apply(events);
          },
          onNotice: (notice) => {
            if (!ac.signal.aborted) this.rateLimit.apply(notice);
          },
        },
      );
      if (ac.signal.aborted) return;
      this.elapsed = (this.now() - this.startedAt) / 1000;
      this.outcome = outcome;
      this.status = 'ready';
    } catch (err) {
      const e = LongshoreError.from(err);
      if (ac.signal.aborted || e.code === ErrorCode.Aborted) {
        this.status = 'cancelled';
        this.outcome = undefined;
      } else {
        this.error = shown(e);
        this.status = 'failed';
        this.outcome = undefined;
      }
    } finally {
      this.rateLimit.endWait();
      prepared?.dispose();
      if (this.#pullAbort === ac) this.#pullAbort = undefined;
    }
  }

  cancel(): void {
    if (!this.#pullAbort) return;
    this.#pullAbort.abort();
    this.#pullAbort = undefined;
    this.status = 'cancelled';
    this.outcome = undefined;
  }

  /** Fold progress events into the layer rows. */
  apply(events: PullEvent[]): void {
    const t = this.now();
    this.elapsed = (t - this.startedAt) / 1000;
    let rows = this.layers.slice();
    for (const e of events) {
      if (e.type === 'plan') {
        rows = e.layers.map((l) => ({
          index: l.index,
          digest: l.digest,
          mediaType: l.mediaType,
          size: l.size,
          done: l.cached ? l.size : 0,
          state: l.cached ? 'cached' : 'waiting',
          rate: 0,
        }));
      } else if (e.type === 'layer') {
        const row = rows[e.index];
        if (!row) continue;
        const prev = this.#samples.get(e.index);
        let rate = row.rate;
        if (prev && t > prev.t) {
          const instant = ((e.done - prev.done) * 1000) / (t - prev.t);
          rate = rate === 0 ? instant : rate + RATE_SMOOTHING * (instant - rate);
        }
        this.#samples.set(e.index, { t, done: e.done });
        rows[e.index] = { ...row, done: e.done, state: e.state, rate: e.state === 'downloading' ? rate : 0 };
      } else if (e.type === 'warning') {
        this.warnings = [...this.warnings, { code: e.code, message: e.message, hint: e.hint }];
      }
    }
    this.layers = rows;
  }
}

function shown(err: unknown): ShownError {
  const e = LongshoreError.from(err);
  return { code: e.code, message: e.message, hint: e.hint };
}
