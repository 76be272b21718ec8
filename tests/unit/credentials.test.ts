// Sign-ins by registry in the page's state, and the opt-in device store behind "remember".
import { describe, expect, it } from 'vitest';
import { CredentialsState } from '../../src/ui/state/credentials.svelte.ts';
import { CREDENTIALS_KEY, LocalCredentialStore, type KeyValueStorage } from '../../src/browser/credential-store.ts';

function memoryStorage(): KeyValueStorage & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v), removeItem: (k) => void data.delete(k) };
}

const bob = { username: 'bob', password: 'builder' };
const alice = { username: 'alice', password: 'wonderland' };

describe('CredentialsState', () => {
  it('keeps one pair per registry and hands each registry only its own', () => {
    const c = new CredentialsState();
    c.update('a.example', bob);
    c.update('b.example', { username: 'alice' });
    c.update('b.example', { password: 'wonderland' });
    expect(c.forRegistries(['a.example', 'b.example', 'c.example'])).toEqual({ 'a.example': bob, 'b.example': alice });
    expect(c.forRegistries(['c.example'])).toBeUndefined();
  });

  it('stores nothing on the device unless asked; remembered pairs survive a new page, forgotten ones do not', () => {
    const storage = memoryStorage();
    const first = new CredentialsState(new LocalCredentialStore(storage, () => 1_000));
    first.update('a.example', bob);
    first.update('b.example', alice);
    expect(storage.data.size).toBe(0);
    first.update('a.example', { remember: true });
    first.update('b.example', { remember: true });
    expect(first.remembered.map((l) => [l.registry, l.username, l.savedAt])).toEqual([
      ['a.example', 'bob', 1_000],
      ['b.example', 'alice', 1_000],
    ]);

    const reloaded = new CredentialsState(new LocalCredentialStore(storage));
    expect(reloaded.login('a.example')).toEqual({ ...bob, remember: true });
    reloaded.forget('a.example');
    expect(reloaded.login('a.example')).toEqual({ username: '', password: '', remember: false });
    expect(reloaded.remembered.map((l) => l.registry)).toEqual(['b.example']);

    const again = new CredentialsState(new LocalCredentialStore(storage));
    expect(again.forRegistries(['a.example', 'b.example'])).toEqual({ 'b.example': alice });
    again.update('b.example', { remember: false });
    expect(again.login('b.example')).toEqual({ ...alice, remember: false });
    expect(storage.data.has(CREDENTIALS_KEY)).toBe(false);
  });

  it('a changed password is saved again while remembered', () => {
    const storage = memoryStorage();
    const c = new CredentialsState(new LocalCredentialStore(storage));
    c.update('a.example', { username: 'bob', password: 'wrong', remember: true });
    c.update('a.example', { password: 'builder' });
    expect(new LocalCredentialStore(storage).list()).toMatchObject([{ registry: 'a.example', ...bob }]);
  });

  it('ignores a damaged store', () => {
    const storage = memoryStorage();
    storage.setItem(CREDENTIALS_KEY, '{not json');
    expect(new LocalCredentialStore(storage).list()).toEqual([]);
    storage.setItem(
      CREDENTIALS_KEY,
      JSON.stringify([
        { registry: 'a', username: 1 },
        { registry: 'b', username: 'u', password: 'p', savedAt: 2 },
      ]),
    );
    expect(new LocalCredentialStore(storage).list().map((l) => l.registry)).toEqual(['b']);
  });
});
