// The storage panel's state: what the cache holds (images, shared blobs, orphans), what the
// browser allows, persistence, and the eviction budget. It reaches IndexedDB and the
// StorageManager only through the StorageService it is given, so it is tested without a DOM.
import type { CatalogView, StorageService } from '../../browser/image-catalog.ts';

export class StorageState {
  view = $state.raw<CatalogView | undefined>(undefined);
  estimate = $state.raw<{ usage?: number; quota?: number } | undefined>(undefined);
  /** undefined: the browser does not say (or has no StorageManager). */
  persisted = $state<boolean | undefined>(undefined);
  /** The answer to the last persist() request, shown next to the button. */
  persistAnswer = $state<'granted' | 'denied' | undefined>(undefined);
  error = $state<string | undefined>(undefined);
  busy = $state(false);

  /** Each store key used by more than one image, for marking rows. */
  readonly sharedKeys = $derived(new Set((this.view?.shared ?? []).map((s) => s.key)));
  readonly sharedBytes = $derived((this.view?.shared ?? []).reduce((n, s) => n + s.size, 0));

  constructor(private readonly service: StorageService) {}

  async refresh(): Promise<void> {
    try {
      const [view, estimate, persisted] = await Promise.all([this.service.view(), this.service.estimate(), this.service.persisted()]);
      this.view = view;
      this.estimate = estimate;
      this.persisted = persisted;
      this.error = undefined;
    } catch (err) {
      this.error = (err as Error)?.message ?? String(err);
    }
  }

  async #act(fn: () => Promise<unknown>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await fn();
    } catch (err) {
      this.error = (err as Error)?.message ?? String(err);
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }

  remove(digest: string): Promise<void> {
    return this.#act(() => this.service.deleteImage(digest));
  }

  clear(): Promise<void> {
    return this.#act(() => this.service.clear());
  }

  persist(): Promise<void> {
    return this.#act(async () => {
      const granted = await this.service.persist();
      this.persistAnswer = granted === undefined ? undefined : granted ? 'granted' : 'denied';
    });
  }

  /** Megabytes as typed; empty or 0 removes the budget (the browser's quota decides). */
  setBudgetMB(typed: string | number | null): Promise<void> {
    // A number input bound with bind:value hands over a number, or null when empty.
    const text = typed === null ? '' : String(typed).trim();
    const mb = Number(text);
    return this.#act(() => this.service.setBudget(text === '' || !Number.isFinite(mb) || mb <= 0 ? undefined : mb * 1_000_000));
  }
}

/** What offline can rebuild for one cached image, in a few words. */
export function offlineText(offline: 'all' | 'uncompressed-only' | 'none'): string {
  switch (offline) {
    case 'all':
      return 'every format';
    case 'uncompressed-only':
      return 'legacy only (pull once online for docker, oci, tarball)';
    case 'none':
      return 'nothing (blobs missing)';
  }
}
