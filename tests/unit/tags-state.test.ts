// The tag picker's state over a scripted service: pages as they arrive, natural order, the filter,
// the rendered slice, and the picked tag's HEAD.
import { describe, expect, it } from 'vitest';
import { SHOWN_TAGS, TagsState } from '../../src/ui/state/tags.svelte.ts';
import type { TagService } from '../../src/browser/tag-service.ts';
import { LongshoreError } from '../../src/core/errors.ts';

const digest = `sha256:${'d'.repeat(64)}`;

function service(tags: string[], pageSize = 1000): TagService & { heads: string[] } {
  const heads: string[] = [];
  return {
    heads,
    async list(_repository, { onPage }) {
      for (let i = 0; i < tags.length; i += pageSize) onPage?.(tags.slice(i, i + pageSize));
      return { tags, pages: Math.ceil(tags.length / pageSize), truncated: false };
    },
    async head(reference) {
      heads.push(reference);
      return { digest, mediaType: 'application/vnd.oci.image.index.v1+json', size: 100 };
    },
  };
}

describe('TagsState', () => {
  it('sorts naturally, filters as you type and renders a bounded slice', async () => {
    const tags = Array.from({ length: 2500 }, (_, i) => `v${i}`).reverse();
    const state = new TagsState(service(tags));
    await state.open('r.example/app');
    expect(state.tags.slice(0, 3)).toEqual(['v0', 'v1', 'v2']);
    expect(state.tags.at(-1)).toBe('v2499');
    expect(state.shown).toHaveLength(SHOWN_TAGS);
    state.filter = 'V24';
    expect(state.matches).toEqual([
      'v24',
      ...Array.from({ length: 10 }, (_, i) => `v24${i}`),
      ...Array.from({ length: 100 }, (_, i) => `v24${String(i).padStart(2, '0')}`),
    ]);
    expect(state.loading).toBe(false);
  });

  it('picks a tag and keeps its HEAD digest; shows a listing error with its code', async () => {
    const svc = service(['latest', '1.0']);
    const state = new TagsState(svc);
    await state.open('r.example/app');
    await state.pick('1.0');
    expect(svc.heads).toEqual(['r.example/app:1.0']);
    expect(state.head?.digest).toBe(digest);

    const failing = new TagsState({
      ...svc,
      list: async () => {
        throw new LongshoreError('NAME_UNKNOWN', 'no such repository', { hint: 'check it' });
      },
    });
    await failing.open('r.example/none');
    expect(failing.error).toEqual({ code: 'NAME_UNKNOWN', message: 'no such repository', hint: 'check it' });
    expect(failing.loading).toBe(false);
  });
});
