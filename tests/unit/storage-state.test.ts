// The storage panel's state without a DOM: a small in-memory StorageService stands in for
// IndexedDB and navigator.storage (the real ones are exercised in tests/e2e/cache-offline.test.ts).
import { describe, expect, it } from 'vitest';
import { StorageState, offlineText } from '../../src/ui/state/storage-state.svelte.ts';
import type { CatalogView, StorageService } from '../../src/browser/image-catalog.ts';

function fakeService(view: CatalogView, persistGrant: boolean | undefined) {
  const calls: string[] = [];
  let budget: number | undefined;
  const service: StorageService = {
    view: async () => ({ ...view, budget }),
    deleteImage: async (d) => void calls.push(`delete ${d}`),
    clear: async () => void calls.push('clear'),
    setBudget: async (b) => {
      budget = b;
      calls.push(`budget ${b}`);
    },
    estimate: async () => ({ usage: 10, quota: 1000 }),
    persisted: async () => false,
    persist: async () => persistGrant,
  };
  return { service, calls };
}

const view: CatalogView = {
  images: [],
  shared: [
    { key: 'sha256:' + 'a'.repeat(64), size: 300, users: ['x', 'y'] },
    { key: 'sha256:' + 'b'.repeat(64), size: 200, users: ['x', 'y'] },
  ],
  storeBytes: 1000,
  orphanBytes: 0,
  budget: undefined,
};

describe('StorageState', () => {
  it('refresh reads the view, estimate and persistence; actions go to the service and refresh after', async () => {
    const { service, calls } = fakeService(view, false);
    const s = new StorageState(service);
    await s.refresh();
    expect(s.estimate).toEqual({ usage: 10, quota: 1000 });
    expect(s.persisted).toBe(false);
    expect(s.sharedBytes).toBe(500);
    expect(s.sharedKeys.has('sha256:' + 'a'.repeat(64))).toBe(true);
    await s.remove('sha256:' + 'c'.repeat(64));
    await s.setBudgetMB(250);
    expect(s.view?.budget).toBe(250_000_000);
    await s.setBudgetMB('');
    await s.setBudgetMB(-3);
    await s.setBudgetMB(null);
    await s.clear();
    await s.persist();
    expect(s.persistAnswer).toBe('denied');
    expect(calls).toEqual([
      `delete sha256:${'c'.repeat(64)}`,
      'budget 250000000',
      'budget undefined',
      'budget undefined',
      'budget undefined',
      'clear',
    ]);
  });

  it('says what offline can rebuild', () => {
    expect(offlineText('all')).toBe('every format');
    expect(offlineText('uncompressed-only')).toMatch(/^legacy only/);
  });
});
