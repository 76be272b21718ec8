// Answers registry challenges: Basic with stored credentials, or Bearer via a token from the
// challenge's realm (distribution "Token Authentication Specification"). Tokens are cached per
// registry + scope until shortly before `expires_in` runs out.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { guardBody, readCapped, type Transport } from '../http/transport.ts';
import { fetchWithRetry, type RetryPolicy } from '../http/retry.ts';
import { isLoopbackHost } from '../reference.ts';
import { challengeScopes, type Challenge } from './challenge.ts';

export interface Credentials {
  username: string;
  password: string;
}

/** Credentials by registry host ('ghcr.io', 'docker.io', '127.0.0.1:5000'); undefined = anonymous. */
export type CredentialLookup = (registry: string) => Credentials | undefined;

interface CachedAuth {
  header: string;
  expiresAt: number;
}

/** A cached Authorization answer, as handed to another client (another Worker) of the same page. */
export interface SharedAuth {
  registry: string;
  scope: string;
  header: string;
  /** Epoch ms (the retry policy's clock); Infinity for Basic. */
  expiresAt: number;
}

const TOKEN_BODY_LIMIT = 1024 * 1024;
/** distribution's token spec: a token without expires_in lives 60 seconds. */
const DEFAULT_TOKEN_SECONDS = 60;

/** longshore's proxy refusing the realm itself (src/proxy/handler.ts envelope), not the token service answering. */
function proxyRefused(body: Uint8Array | undefined): boolean {
  if (!body) return false;
  try {
    const parsed = JSON.parse(new TextDecoder().decode(body)) as { errors?: { code?: unknown; detail?: { proxy?: unknown } }[] };
    return parsed.errors?.some((e) => e.code === ErrorCode.ProxyDenied && e.detail?.proxy === true) ?? false;
  } catch {
    return false;
  }
}

export function basicHeader(credentials: Credentials): string {
  const bytes = new TextEncoder().encode(`${credentials.username}:${credentials.password}`);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

export class Authenticator {
  readonly #cache = new Map<string, CachedAuth>();

  constructor(
    private readonly transport: Transport,
    private readonly credentials: CredentialLookup,
    private readonly retry: RetryPolicy,
  ) {}

  #key(registry: string, scope: string): string {
    return `${registry} ${scope}`;
  }

  cached(registry: string, scope: string): string | undefined {
    const key = this.#key(registry, scope);
    const hit = this.#cache.get(key) ?? this.#cache.get(this.#key(registry, '*basic'));
    if (!hit) return undefined;
    if (hit.expiresAt <= this.retry.now()) {
      this.#cache.delete(key);
      return undefined;
    }
    return hit.header;
  }

  /** Every answer still valid, to seed another client so it need not ask the registry again. */
  share(): SharedAuth[] {
    const now = this.retry.now();
    const out: SharedAuth[] = [];
    for (const [key, { header, expiresAt }] of this.#cache) {
      if (expiresAt <= now) continue;
      const space = key.indexOf(' ');
      out.push({ registry: key.slice(0, space), scope: key.slice(space + 1), header, expiresAt });
    }
    return out;
  }

  /** Takes answers another client shared; an answer already held that lasts longer is kept. */
  adopt(shared: readonly SharedAuth[]): void {
    for (const a of shared) {
      const key = this.#key(a.registry, a.scope);
      const held = this.#cache.get(key);
      if (!held || held.expiresAt < a.expiresAt) this.#cache.set(key, { header: a.header, expiresAt: a.expiresAt });
    }
  }

  forget(registry: string, scope: string): void {
    this.#cache.delete(this.#key(registry, scope));
    this.#cache.delete(this.#key(registry, '*basic'));
  }

  /**
   * Returns the Authorization header value answering `challenge` for `scope` on `registry`, or
   * undefined when we have nothing to answer with (Basic without credentials).
   */
  async authorize(registry: string, challenge: Challenge, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const creds = this.credentials(registry);
    if (challenge.scheme === 'basic') {
      if (!creds) return undefined;
      const header = basicHeader(creds);
      this.#cache.set(this.#key(registry, '*basic'), { header, expiresAt: Number.POSITIVE_INFINITY });
      return header;
    }
    if (challenge.scheme !== 'bearer') return undefined;
    const realm = challenge.params['realm'];
    if (!realm) {
      throw new LongshoreError(ErrorCode.Auth, `${registry} asked for a bearer token but named no realm to get it from.`, {
        hint: 'The registry is misconfigured; its WWW-Authenticate header lacks realm="…".',
        data: { registry, challenge },
      });
    }
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw new LongshoreError(ErrorCode.Auth, `${registry} named an invalid token realm ${JSON.stringify(realm)}.`, {
        data: { registry, realm },
      });
    }
    const scopes = [...new Set([...challengeScopes(challenge), scope])];
    const query = new URLSearchParams();
    if (challenge.params['service']) query.set('service', challenge.params['service']);
    for (const s of scopes) query.append('scope', s);
    realmUrl.search = query.toString();

    const headers: Record<string, string> = {};
    // Credentials go to the realm the registry named (that is the protocol), but never in clear
    // text to a third host: only over https, to loopback, or to the registry's own host.
    if (creds && (realmUrl.protocol === 'https:' || isLoopbackHost(realmUrl.host) || realmUrl.host === registry)) {
      headers['authorization'] = basicHeader(creds);
    }
    const url = realmUrl.toString();
    const fetched = this.transport.rewrite ? this.transport.rewrite(url) : url;
    const response = await fetchWithRetry(() => this.transport.fetch(fetched, { headers, signal }), this.retry, signal);
    const body = await readCapped(response.body && guardBody(response.body, `a token for ${registry}`, signal), TOKEN_BODY_LIMIT);
    if (!response.ok && proxyRefused(body)) {
      throw new LongshoreError(
        ErrorCode.ProxyDenied,
        `longshore's proxy is not allowed to reach ${registry}'s token service ${realmUrl.origin}${realmUrl.pathname}.`,
        {
          hint: `Add "${realmUrl.origin}${realmUrl.pathname}" to the "tokenRealms" list of the LONGSHORE_CONFIG file (README, "Proxy configuration").`,
          data: { registry, realm: realmUrl.origin + realmUrl.pathname, status: response.status },
        },
      );
    }
    if (!response.ok) {
      const denied = response.status === 401 || response.status === 403;
      throw new LongshoreError(
        denied ? ErrorCode.Unauthorized : ErrorCode.Auth,
        `The token service ${realmUrl.origin}${realmUrl.pathname} refused a token for ${registry} (${response.status}).`,
        {
          hint: denied
            ? creds
              ? `The credentials for ${registry} were rejected. Check the user name and password (or access token).`
              : `${registry} requires sign-in for this repository. Add credentials, or check the repository name.`
            : "The registry's token service failed; try again later.",
          retryable: response.status === 429 || response.status >= 500,
          data: { registry, realm: realmUrl.origin + realmUrl.pathname, status: response.status },
        },
      );
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(new TextDecoder().decode(body)) as typeof parsed;
    } catch {
      throw new LongshoreError(ErrorCode.Auth, `The token service for ${registry} did not return JSON.`, { data: { registry } });
    }
    const token =
      typeof parsed.token === 'string' && parsed.token
        ? parsed.token
        : typeof parsed.access_token === 'string' && parsed.access_token
          ? parsed.access_token
          : undefined;
    if (!token) {
      throw new LongshoreError(ErrorCode.Auth, `The token service for ${registry} returned neither "token" nor "access_token".`, {
        data: { registry },
      });
    }
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew a little early so a token does not expire in flight.
    const margin = Math.min(30, seconds / 10);
    const header = `Bearer ${token}`;
    this.#cache.set(this.#key(registry, scope), { header, expiresAt: this.retry.now() + (seconds - margin) * 1000 });
    return header;
  }
}
