// The inspector's state: which image is open (a pulled one or a local archive), which view (a
// layer or the merged filesystem), tree or table, filter and sort, and the window of rows on
// screen. Rows live in the worker; this asks for the few that are visible. It talks to the worker
// only through the bridge it is given, so it is tested without a DOM or a worker.
import { LongshoreError } from '../../core/errors.ts';
import type { InspectTarget, SortKey, ViewQuery, ViewRow } from '../../core/listing/index.ts';
import type { InspectBridgeLike } from '../../browser/inspect-bridge.ts';
import type { ExportProgress, OpenedInspection, SessionStatus, ViewId } from '../../browser/inspect-protocol.ts';

export interface ShownError {
  code: string;
  message: string;
  hint: string | undefined;
}

export type SaveFile = (blob: Blob, fileName: string) => void;

/** Rows fetched beyond the visible ones, above and below. */
const OVERSCAN = 30;

function shown(err: unknown): ShownError {
  const e = LongshoreError.from(err);
  return { code: e.code, message: e.message, hint: e.hint };
}

export class InspectorState {
  opened = $state.raw<OpenedInspection | undefined>(undefined);
  status = $state.raw<SessionStatus | undefined>(undefined);
  view = $state<ViewId>(0);
  mode = $state<'tree' | 'flat'>('tree');
  filter = $state('');
  /** undefined: natural order (names in the tree, tar order in a layer table, paths in the merged table). */
  sort = $state<SortKey | undefined>(undefined);
  descending = $state(false);
  expanded = $state.raw<string[]>([]);
  total = $state(0);
  rows = $state.raw<ViewRow[]>([]);
  /** Index of the first row in `rows`. */
  rowsStart = $state(0);
  active = $state(0);
  opening = $state(false);
  error = $state.raw<ShownError | undefined>(undefined);
  exportProgress = $state.raw<ExportProgress | undefined>(undefined);
  exporting = $state(false);
  downloading = $state(false);

  readonly #bridge: () => InspectBridgeLike;
  readonly #save: SaveFile;
  #bridgeInstance: InspectBridgeLike | undefined;
  #seq = 0;
  #visible = { first: 0, count: 40 };
  #inFlight = false;
  #again = false;
  #openAbort: AbortController | undefined;

  readonly query: ViewQuery = $derived({
    mode: this.mode,
    filter: this.filter,
    ...(this.sort ? { sort: this.sort } : this.mode === 'flat' && this.view === 'merged' ? { sort: 'path' as const } : {}),
    descending: this.descending,
    expanded: this.expanded,
  });
  readonly layers = $derived(this.status?.layers ?? []);
  readonly currentLayer = $derived(typeof this.view === 'number' ? this.layers[this.view] : undefined);
  readonly activeRow = $derived(this.rows[this.active - this.rowsStart]);
  readonly mergedReady = $derived(this.status?.merged.state === 'ready');

  constructor(bridge: () => InspectBridgeLike, save: SaveFile) {
    this.#bridge = bridge;
    this.#save = save;
  }

  get bridge(): InspectBridgeLike {
    return (this.#bridgeInstance ??= this.#bridge());
  }

  #reset(): void {
    if (this.opened) this.bridge.close(this.opened.session);
    this.#openAbort?.abort();
    this.opened = undefined;
    this.status = undefined;
    this.rows = [];
    this.total = 0;
    this.rowsStart = 0;
    this.active = 0;
    this.expanded = [];
    this.filter = '';
    this.sort = undefined;
    this.view = 0;
    this.error = undefined;
  }

  async #open(source: Parameters<InspectBridgeLike['open']>[0]): Promise<void> {
    this.#reset();
    const ac = new AbortController();
    this.#openAbort = ac;
    this.opening = true;
    try {
      const opened = await this.bridge.open(source, (status) => this.#onStatus(status), { signal: ac.signal });
      if (ac.signal.aborted) return this.bridge.close(opened.session);
      this.opened = opened;
      this.view = opened.target.layers.length ? 0 : 'merged';
      this.refresh();
    } catch (err) {
      if (!ac.signal.aborted) this.error = shown(err);
    } finally {
      if (this.#openAbort === ac) this.opening = false;
    }
  }

  /** Inspect a pulled image (its layer blobs are in the browser cache). */
  openTarget(target: InspectTarget): Promise<void> {
    return this.#open({ kind: 'stored', target });
  }

  /** Inspect a local archive; nothing leaves the browser. */
  openArchive(file: File, image = 0): Promise<void> {
    return this.#open({ kind: 'archive', file, image });
  }

  close(): void {
    this.#reset();
  }

  #onStatus(status: SessionStatus): void {
    if (status.session !== this.opened?.session) return;
    this.status = status;
    this.refresh();
  }

  select(view: ViewId): void {
    if (view === this.view) return;
    this.view = view;
    this.expanded = [];
    this.active = 0;
    this.rowsStart = 0;
    this.rows = [];
    this.refresh();
  }

  setMode(mode: 'tree' | 'flat'): void {
    this.mode = mode;
    this.sort = undefined;
    this.descending = false;
    this.active = 0;
    this.refresh();
  }

  setFilter(text: string): void {
    this.filter = text;
    this.active = 0;
    this.refresh();
  }

  /** Sort by a column; again reverses it. Size sorts largest first. */
  toggleSort(key: SortKey): void {
    if (this.sort === key) this.descending = !this.descending;
    else {
      this.sort = key;
      this.descending = key === 'size';
    }
    this.refresh();
  }

  toggle(path: string, open?: boolean): void {
    const isOpen = this.expanded.includes(path);
    if (open === isOpen) return;
    this.expanded = isOpen ? this.expanded.filter((p) => p !== path && !p.startsWith(`${path}/`)) : [...this.expanded, path];
    this.refresh();
  }

  /** The rows the list shows changed (scrolling or resizing). */
  showWindow(first: number, count: number): void {
    this.#visible = { first, count };
    const have = this.rowsStart <= first && first + count <= this.rowsStart + this.rows.length;
    if (!have || this.rows.length === 0) this.refresh();
  }

  setActive(index: number): void {
    this.active = Math.max(0, Math.min(index, Math.max(0, this.total - 1)));
  }

  /** Fetch the window again; calls during a fetch coalesce into one more. */
  refresh(): void {
    if (!this.opened) return;
    if (this.#inFlight) {
      this.#again = true;
      return;
    }
    this.#inFlight = true;
    const seq = ++this.#seq;
    const { session } = this.opened;
    const start = Math.max(0, this.#visible.first - OVERSCAN);
    const count = this.#visible.count + 2 * OVERSCAN;
    const view = this.view;
    const query = $state.snapshot(this.query) as ViewQuery;
    this.bridge
      .query(session, view, query, start, count)
      .then(
        (result) => {
          if (seq !== this.#seq || session !== this.opened?.session) return;
          this.total = result.total;
          this.rows = result.rows;
          this.rowsStart = start;
          if (this.active >= result.total) this.active = Math.max(0, result.total - 1);
        },
        (err) => {
          if (session === this.opened?.session) this.error = shown(err);
        },
      )
      .finally(() => {
        this.#inFlight = false;
        if (this.#again) {
          this.#again = false;
          this.refresh();
        }
      });
  }

  /** Save one file's content (from its layer; a hardlink gives what it links to). */
  async download(row: ViewRow): Promise<void> {
    if (!this.opened || !row.item || row.item.layer < 0) return;
    this.downloading = true;
    this.error = undefined;
    try {
      const file = await this.bridge.download(this.opened.session, row.item.layer, row.item.entry.ordinal);
      this.#save(file.blob, file.fileName);
    } catch (err) {
      this.error = shown(err);
    } finally {
      this.downloading = false;
    }
  }

  /** Save the merged filesystem as one tar. */
  async exportMerged(): Promise<void> {
    if (!this.opened) return;
    this.exporting = true;
    this.error = undefined;
    this.exportProgress = undefined;
    try {
      const file = await this.bridge.export(this.opened.session, { onProgress: (p) => (this.exportProgress = p) });
      this.#save(file.blob, file.fileName);
    } catch (err) {
      this.error = shown(err);
    } finally {
      this.exporting = false;
    }
  }
}
