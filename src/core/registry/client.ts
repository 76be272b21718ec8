// Registry HTTP API client (OCI distribution-spec): ping, manifests, blobs, tags. Auth challenges
// are answered transparently; redirects are followed by hand so that Authorization never leaves
// the registry's origin; transient failures are retried with backoff.
import { AbortedError, ErrorCode, LongshoreError, throwIfAborted } from '../errors.ts';
import { challengeOf, guardBody, readCapped, type Transport } from '../http/transport.ts';
import { defaultRetryPolicy, fetchWithRetry, type RetryPolicy } from '../http/retry.ts';
import type { BlobSender, ByteRange } from '../http/blob-fetch.ts';
import { isLoopbackHost, type ImageReference } from '../reference.ts';
import { sha256, verifyingStream, isDigest } from '../digest.ts';
import { MANIFEST_ACCEPT } from '../image/media-types.ts';
import { MAX_MANIFEST_BYTES } from '../image/manifest.ts';
import type { Descriptor } from '../image/model.ts';
import { foreignUrls } from '../image/foreign.ts';
import { Authenticator, type CredentialLookup, type SharedAuth } from './auth.ts';
import { parseChallenges, pickChallenge, repositoryScope } from './challenge.ts';
import { registryError, type RequestContext } from './errors.ts';

export interface RegistryClientOptions {
  transport: Transport;
  /** Credentials by registry (as written in the reference: 'docker.io', 'ghcr.io', '127.0.0.1:5000'). */
  credentials?: CredentialLookup;
  /** URL scheme per API host; default https, http for loopback hosts. */
  scheme?: (apiHost: string) => 'http' | 'https';
  retry?: Partial<RetryPolicy>;
}

export interface FetchedManifest {
  bytes: Uint8Array;
  digest: string;
  /** Content-Type without parameters ('' when absent). */
  contentType: string;
}

export interface BlobOptions {
  signal?: AbortSignal;
  /** Called with the byte count of each chunk as it passes verification. */
  onBytes?: (n: number) => void;
  /** Names the blob in error messages. */
  label?: string;
}

const MAX_REDIRECTS = 5;

export class RegistryClient {
  readonly #transport: Transport;
  readonly #retry: RetryPolicy;
  readonly #auth: Authenticator;
  readonly #scheme: (host: string) => 'http' | 'https';

  constructor(options: RegistryClientOptions) {
    this.#transport = options.transport;
    this.#retry = { ...defaultRetryPolicy, ...options.retry };
    const creds = options.credentials ?? (() => undefined);
    this.#auth = new Authenticator(
      this.#transport,
      (apiHost) => creds(apiHost) ?? creds(apiHost === 'registry-1.docker.io' ? 'docker.io' : apiHost),
      this.#retry,
    );
    this.#scheme = options.scheme ?? ((host) => (isLoopbackHost(host) ? 'http' : 'https'));
  }

  /** The tokens (and Basic answers) this client holds, for another client of the same page. */
  shareAuth(): SharedAuth[] {
    return this.#auth.share();
  }

  /** Seeds this client with tokens another client got, sparing a 401 and a token request per client. */
  adoptAuth(shared: readonly SharedAuth[]): void {
    this.#auth.adopt(shared);
  }

  baseUrl(apiHost: string): string {
    return `${this.#scheme(apiHost)}://${apiHost}`;
  }

  /**
   * An authenticated request against `apiHost`. On 401 (or insufficient_scope) the challenge is
   * answered once with a fresh token or credentials and the request retried; a second refusal is
   * returned to the caller as it is.
   */
  async request(
    apiHost: string,
    path: string,
    scope: string,
    init: { method?: string; headers?: Record<string, string>; signal?: AbortSignal; retry?: boolean } = {},
  ): Promise<Response> {
    const url = `${this.baseUrl(apiHost)}${path}`;
    let authorization = this.#auth.cached(apiHost, scope);
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...init.headers };
      if (authorization) headers['authorization'] = authorization;
      const response = await this.#send(url, { method: init.method ?? 'GET', headers, retry: init.retry ?? true }, init.signal);
      const header = challengeOf(response);
      const refused = response.status === 401 || (response.status === 403 && /insufficient_scope/.test(header ?? ''));
      if (!refused || attempt > 0) return response;
      const challenge = pickChallenge(parseChallenges(header));
      if (!challenge) return response;
      this.#auth.forget(apiHost, scope);
      const next = await this.#auth.authorize(apiHost, challenge, scope, init.signal);
      if (!next || next === authorization) return response;
      await response.body?.cancel().catch(() => undefined);
      authorization = next;
    }
  }

  /**
   * Fetch (with retries unless `retry` is false: blobs retry in blob-fetch.ts, one layer only),
   * following redirects by hand; Authorization is dropped on a change of origin, every other
   * header (Range included) goes along to the redirect target.
   */
  async #send(
    url: string,
    init: { method?: string; headers?: Record<string, string>; retry?: boolean },
    signal?: AbortSignal,
  ): Promise<Response> {
    const policy = init.retry === false ? { ...this.#retry, retries: 0 } : this.#retry;
    let current = url;
    let headers = { ...init.headers };
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      throwIfAborted(signal);
      const target = this.#transport.rewrite ? this.#transport.rewrite(current) : current;
      const reqInit: RequestInit = { method: init.method ?? 'GET', headers, redirect: 'manual' };
      if (signal) reqInit.signal = signal;
      let response: Response;
      try {
        response = await fetchWithRetry(() => this.#transport.fetch(target, reqInit), policy, signal);
      } catch (err) {
        if (signal?.aborted) throw new AbortedError();
        if (err instanceof LongshoreError) throw err;
        throw new LongshoreError(ErrorCode.Network, `Could not reach ${new URL(current).host}: ${(err as Error).message}`, {
          hint: 'Check the registry host and your connection (and, in the browser, that the longshore proxy is running).',
          retryable: true,
          cause: err,
          data: { url: current },
        });
      }
      if (response.type === 'opaqueredirect') {
        throw new LongshoreError(ErrorCode.Network, `${new URL(current).host} redirected, and this runtime hides redirect targets.`, {
          hint: 'Route requests through the longshore proxy, which follows registry redirects itself.',
          data: { url: current },
        });
      }
      const location = response.status >= 300 && response.status < 400 ? response.headers.get('location') : null;
      if (!location) return response;
      await response.body?.cancel().catch(() => undefined);
      const next = new URL(location, current);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new LongshoreError(ErrorCode.Network, `Refusing to follow a redirect to ${next.protocol} URL.`, { data: { location } });
      }
      if (next.origin !== new URL(current).origin) {
        // Credentials are for the registry: never for the storage or CDN it redirects to.
        const { authorization: _dropped, ...rest } = headers;
        headers = rest;
      }
      current = next.toString();
    }
    throw new LongshoreError(ErrorCode.Network, `Too many redirects fetching ${url}.`, { data: { url } });
  }

  async getManifest(ref: ImageReference, options: { signal?: AbortSignal; accept?: string } = {}): Promise<FetchedManifest> {
    const what = `manifest ${ref.canonical}`;
    const ctx: RequestContext = { what, registry: ref.registry, repository: ref.repository };
    const response = await this.request(ref.apiHost, `/v2/${ref.repository}/manifests/${ref.identifier}`, repositoryScope(ref.repository), {
      headers: { accept: options.accept ?? MANIFEST_ACCEPT },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (!response.ok) throw await registryError(response, ctx);
    const bytes = await readCapped(response.body && guardBody(response.body, `the ${what}`, options.signal), MAX_MANIFEST_BYTES);
    if (!bytes) {
      throw new LongshoreError(ErrorCode.TooLarge, `The ${what} is over the ${MAX_MANIFEST_BYTES}-byte limit for manifests.`, {
        data: { limit: MAX_MANIFEST_BYTES },
      });
    }
    const digest = await sha256(bytes);
    if (ref.digest && digest !== ref.digest) {
      throw new LongshoreError(ErrorCode.DigestMismatch, `The registry returned a manifest with digest ${digest} for ${ref.canonical}.`, {
        hint: 'The manifest does not match the digest you asked for. Nothing was kept; the registry or a proxy in between may be misbehaving.',
        data: { expected: ref.digest, actual: digest },
      });
    }
    const announced = response.headers.get('docker-content-digest');
    if (announced && isDigest(announced) && announced !== digest) {
      throw new LongshoreError(ErrorCode.DigestMismatch, `The ${what} has digest ${digest}, but the registry announced ${announced}.`, {
        hint: 'The manifest was altered on the way. Nothing was kept; try again.',
        retryable: true,
        data: { expected: announced, actual: digest },
      });
    }
    return { bytes, digest, contentType: (response.headers.get('content-type') ?? '').split(';')[0]!.trim() };
  }

  /** A blob's bytes, verified against the descriptor's size and digest while they stream. */
  async openBlob(ref: ImageReference, descriptor: Descriptor, options: BlobOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const label = options.label ?? `blob ${descriptor.digest}`;
    const response = await this.request(
      ref.apiHost,
      `/v2/${ref.repository}/blobs/${descriptor.digest}`,
      repositoryScope(ref.repository),
      options.signal ? { signal: options.signal } : {},
    );
    if (!response.ok) throw await registryError(response, { what: label, registry: ref.registry, repository: ref.repository });
    const length = response.headers.get('content-length');
    if (length !== null && /^\d+$/.test(length) && Number(length) !== descriptor.size) {
      await response.body?.cancel().catch(() => undefined);
      throw new LongshoreError(
        ErrorCode.SizeMismatch,
        `The ${label} is served as ${length} bytes, but its descriptor says ${descriptor.size}.`,
        {
          hint: 'The registry serves a different blob than the manifest describes. Nothing was kept.',
          retryable: true,
          data: { expected: descriptor.size, actual: Number(length), digest: descriptor.digest },
        },
      );
    }
    if (!response.body) throw new LongshoreError(ErrorCode.Network, `The ${label} came back without a body.`, { retryable: true });
    return guardBody(response.body, `the ${label}`, options.signal).pipeThrough(
      verifyingStream({ digest: descriptor.digest, size: descriptor.size, label }, options.onBytes),
    );
  }

  /**
   * Single requests for one blob (or a range of it), for the resumable fetch engine, which owns
   * retries, Range checks and verification (blob-fetch.ts).
   */
  blobSender(ref: ImageReference, descriptor: Descriptor, label = `blob ${descriptor.digest}`): BlobSender {
    const urls = foreignUrls(descriptor);
    if (urls.length > 0) return this.#foreignSender(ref, urls, label);
    const path = `/v2/${ref.repository}/blobs/${descriptor.digest}`;
    const scope = repositoryScope(ref.repository);
    return {
      retry: this.#retry,
      send: (range, signal) =>
        this.request(ref.apiHost, path, scope, {
          headers: this.#blobHeaders(range),
          retry: false,
          ...(signal ? { signal } : {}),
        }),
      fail: (response) => registryError(response, { what: label, registry: ref.registry, repository: ref.repository }),
    };
  }

  #blobHeaders(range: ByteRange | undefined): Record<string, string> {
    const headers: Record<string, string> = { ...this.#transport.blobHeaders };
    if (range) headers.range = `bytes=${range.start}-${range.end ?? ''}`;
    return headers;
  }

  /**
   * A foreign layer's bytes from its `urls` (image-spec descriptor.md: "alternate" locations, tried
   * in order), never with the registry's credentials; verified by digest like any blob.
   */
  #foreignSender(ref: ImageReference, urls: string[], label: string): BlobSender {
    return {
      retry: this.#retry,
      send: async (range, signal) => {
        const headers = this.#blobHeaders(range);
        let last: Response | undefined;
        let error: unknown;
        for (const url of urls) {
          try {
            const response = await this.#send(url, { headers, retry: false }, signal);
            if (response.ok) {
              await last?.body?.cancel().catch(() => undefined);
              return response;
            }
            await last?.body?.cancel().catch(() => undefined);
            last = response;
          } catch (err) {
            if (signal?.aborted) throw err;
            error = err;
          }
        }
        if (last) return last;
        throw error;
      },
      fail: (response) => registryError(response, { what: label, registry: new URL(urls[0]!).host, repository: ref.repository }),
    };
  }
}
