// Sign-ins by registry: one user name and password per registry host named in the image names,
// kept in this tab's memory unless the person opts in to remembering them on this device. A
// pull sends each registry only its own pair (the worker's client answers a registry's
// challenges with that registry's pair alone, src/core/registry/auth.ts).
import type { Credentials } from '../../core/registry/auth.ts';
import type { CredentialStore, RememberedLogin } from '../../browser/credential-store.ts';

export interface RegistryLogin extends Credentials {
  /** Saved on this device (opt-in); otherwise only in this tab's memory. */
  remember: boolean;
}

const EMPTY: RegistryLogin = Object.freeze({ username: '', password: '', remember: false });

export class CredentialsState {
  #logins = $state<Record<string, RegistryLogin>>({});
  /** What is stored on this device (registry, user name, when), for the list with "Forget". */
  remembered = $state.raw<RememberedLogin[]>([]);

  constructor(private readonly store?: CredentialStore) {
    for (const l of store?.list() ?? []) this.#logins[l.registry] = { username: l.username, password: l.password, remember: true };
    this.remembered = store?.list() ?? [];
  }

  /** Whether "remember on this device" can be offered at all. */
  get canRemember(): boolean {
    return this.store !== undefined;
  }

  login(registry: string): RegistryLogin {
    return this.#logins[registry] ?? EMPTY;
  }

  update(registry: string, patch: Partial<RegistryLogin>): void {
    const next = { ...this.login(registry), ...patch };
    this.#logins[registry] = next;
    if (!this.store) return;
    if (next.remember && next.username) this.store.save(registry, { username: next.username, password: next.password });
    else if (patch.remember === false || (next.remember && !next.username)) this.store.forget(registry);
    this.remembered = this.store.list();
  }

  /** Removes the pair from this device and from the tab. */
  forget(registry: string): void {
    this.store?.forget(registry);
    delete this.#logins[registry];
    this.remembered = this.store?.list() ?? [];
  }

  /** Each registry's own pair, for the registries of one pull; undefined when none has one. */
  forRegistries(registries: readonly string[]): Record<string, Credentials> | undefined {
    const out: Record<string, Credentials> = {};
    for (const r of registries) {
      const l = this.#logins[r];
      if (l?.username) out[r] = { username: l.username, password: l.password };
    }
    return Object.keys(out).length ? out : undefined;
  }
}
