// Sign-ins the person chose to remember on this device, one per registry, in localStorage.
// localStorage rather than IndexedDB: a handful of tiny records, read synchronously while the page
// starts (so a deep link's first look-up already has them), and kept apart from the blob cache's
// database, whose clearing and eviction must never take (or keep) secrets. Neither is encrypted:
// the page says so before anything is stored.
import type { Credentials } from '../core/registry/auth.ts';

export interface RememberedLogin extends Credentials {
  /** Registry host as in image names ('docker.io', 'ghcr.io', '127.0.0.1:5000'). */
  registry: string;
  /** Epoch ms of the last save. */
  savedAt: number;
}

export interface CredentialStore {
  list(): RememberedLogin[];
  save(registry: string, credentials: Credentials): void;
  forget(registry: string): void;
}

/** The part of the Web Storage API used here, so tests can hand in a Map-backed one. */
export type KeyValueStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

export const CREDENTIALS_KEY = 'longshore.credentials.v1';

function isLogin(value: unknown): value is RememberedLogin {
  const v = value as Partial<RememberedLogin> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.registry === 'string' &&
    typeof v.username === 'string' &&
    typeof v.password === 'string' &&
    typeof v.savedAt === 'number'
  );
}

export class LocalCredentialStore implements CredentialStore {
  constructor(
    private readonly storage: KeyValueStorage,
    private readonly now: () => number = Date.now,
  ) {}

  list(): RememberedLogin[] {
    let parsed: unknown;
    try {
      parsed = JSON.parse(this.storage.getItem(CREDENTIALS_KEY) ?? '[]');
    } catch {
      return [];
    }
    return Array.isArray(parsed) ? parsed.filter(isLogin).sort((a, b) => a.registry.localeCompare(b.registry)) : [];
  }

  save(registry: string, credentials: Credentials): void {
    const others = this.list().filter((l) => l.registry !== registry);
    this.#write([...others, { registry, username: credentials.username, password: credentials.password, savedAt: this.now() }]);
  }

  forget(registry: string): void {
    this.#write(this.list().filter((l) => l.registry !== registry));
  }

  #write(logins: RememberedLogin[]): void {
    if (logins.length === 0) this.storage.removeItem(CREDENTIALS_KEY);
    else this.storage.setItem(CREDENTIALS_KEY, JSON.stringify(logins));
  }
}

/** Where localStorage is missing or refused (some private modes throw on access): remember nothing. */
export function deviceCredentialStore(): CredentialStore | undefined {
  try {
    const storage = globalThis.localStorage;
    return storage ? new LocalCredentialStore(storage) : undefined;
  } catch {
    return undefined;
  }
}
