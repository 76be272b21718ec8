// The tag picker's state: one repository's tags (all pages), a filter applied as you type, and
// the picked tag's digest by HEAD. Only the first matches are rendered, so 2,500 tags (or
// 100,000) filter at typing speed.
import { LongshoreError } from '../../core/errors.ts';
import type { Credentials } from '../../core/registry/auth.ts';
import type { TagHead } from '../../core/registry/tags.ts';
import type { TagService } from '../../browser/tag-service.ts';

/** Rows put in the DOM at once; the count says how many more match. */
export const SHOWN_TAGS = 200;

const collator = new Intl.Collator('en', { numeric: true });

export class TagsState {
  /** 'registry/repository' being browsed; '' when closed. */
  repository = $state('');
  tags = $state.raw<string[]>([]);
  loading = $state(false);
  truncated = $state(false);
  error = $state.raw<{ code: string; message: string; hint: string | undefined } | undefined>(undefined);
  filter = $state('');
  picked = $state('');
  head = $state.raw<TagHead | undefined>(undefined);

  readonly matches = $derived.by(() => {
    const f = this.filter.trim().toLowerCase();
    return f ? this.tags.filter((t) => t.toLowerCase().includes(f)) : this.tags;
  });
  readonly shown = $derived(this.matches.slice(0, SHOWN_TAGS));

  #abort: AbortController | undefined;

  constructor(private readonly service: TagService) {}

  async open(repository: string, credentials?: Record<string, Credentials>): Promise<void> {
    this.#abort?.abort();
    const ac = new AbortController();
    this.#abort = ac;
    Object.assign(this, {
      repository,
      tags: [],
      truncated: false,
      error: undefined,
      filter: '',
      picked: '',
      head: undefined,
      loading: true,
    });
    const collected: string[] = [];
    try {
      const list = await this.service.list(repository, {
        signal: ac.signal,
        ...(credentials ? { credentials } : {}),
        onPage: (page) => {
          if (ac.signal.aborted) return;
          collected.push(...page);
          this.tags = collected.slice().sort(collator.compare);
        },
      });
      if (ac.signal.aborted) return;
      this.tags = list.tags.slice().sort(collator.compare);
      this.truncated = list.truncated;
    } catch (err) {
      if (!ac.signal.aborted) this.error = shown(err);
    } finally {
      if (this.#abort === ac) this.loading = false;
    }
  }

  /** Marks `tag` picked and fetches its digest by HEAD (not counted as a pull on Docker Hub). */
  async pick(tag: string, credentials?: Record<string, Credentials>): Promise<void> {
    this.picked = tag;
    this.head = undefined;
    try {
      const head = await this.service.head(`${this.repository}:${tag}`, credentials ? { credentials } : {});
      if (this.picked === tag) this.head = head;
    } catch (err) {
      if (this.picked === tag) this.error = shown(err);
    }
  }

  close(): void {
    this.#abort?.abort();
    this.repository = '';
    this.tags = [];
    this.loading = false;
  }
}

function shown(err: unknown) {
  const e = LongshoreError.from(err);
  return { code: e.code, message: e.message, hint: e.hint };
}
