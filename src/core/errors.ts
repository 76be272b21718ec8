// Errors with a stable `code`, a technical message, a user `hint` and structured `data`.
// They serialise with toJSON/fromJSON so they survive a Worker boundary; the UI switches on
// `code`, never on message text.

export const ErrorCode = {
  InvalidReference: 'INVALID_REFERENCE',
  InvalidArgument: 'INVALID_ARGUMENT',
  Network: 'NETWORK',
  Http: 'HTTP',
  Registry: 'REGISTRY',
  Unauthorized: 'UNAUTHORIZED',
  Denied: 'DENIED',
  ManifestUnknown: 'MANIFEST_UNKNOWN',
  NameUnknown: 'NAME_UNKNOWN',
  BlobUnknown: 'BLOB_UNKNOWN',
  TooManyRequests: 'TOOMANYREQUESTS',
  UnsupportedManifest: 'UNSUPPORTED_MANIFEST',
  InvalidManifest: 'INVALID_MANIFEST',
  TooLarge: 'TOO_LARGE',
  DigestMismatch: 'DIGEST_MISMATCH',
  SizeMismatch: 'SIZE_MISMATCH',
  NoMatchingPlatform: 'NO_MATCHING_PLATFORM',
  Auth: 'AUTH',
  Aborted: 'ABORTED',
  Tar: 'TAR',
  Format: 'FORMAT',
  Proxy: 'PROXY',
  Store: 'STORE',
  /** A stage made no progress for longer than its bound (every wait has one). */
  Stalled: 'STALLED',
  /** A worker died or never started. */
  Worker: 'WORKER',
  /** The browser's storage quota (or the disk) is full. */
  QuotaExceeded: 'QUOTA_EXCEEDED',
  Internal: 'INTERNAL',
  // The rest of distribution-spec's "Error Codes", kept as the registry sent them.
  BlobUploadInvalid: 'BLOB_UPLOAD_INVALID',
  BlobUploadUnknown: 'BLOB_UPLOAD_UNKNOWN',
  DigestInvalid: 'DIGEST_INVALID',
  ManifestBlobUnknown: 'MANIFEST_BLOB_UNKNOWN',
  ManifestInvalid: 'MANIFEST_INVALID',
  ManifestUnverified: 'MANIFEST_UNVERIFIED',
  NameInvalid: 'NAME_INVALID',
  SizeInvalid: 'SIZE_INVALID',
  TagInvalid: 'TAG_INVALID',
  Unsupported: 'UNSUPPORTED',
  /** 401 insufficient_scope with a fresh token: Docker Hub's answer for a missing or a private repository alike. */
  NotFoundOrPrivate: 'NOT_FOUND_OR_PRIVATE',
  /** An HTML page where a registry answer was expected (a corporate proxy, load balancer or captive portal). */
  ErrorPage: 'ERROR_PAGE',
  /** longshore's proxy refused the destination (src/proxy/handler.ts). */
  ProxyDenied: 'PROXY_DENIED',
  /** longshore's proxy could not connect to the registry: it is down, or the host is wrong. */
  ProxyUnreachable: 'PROXY_UNREACHABLE',
  /** The proxy's other refusals (src/proxy/handler.ts): a loop, its per-client limits, no free pooled connection, an upstream too slow or not speaking HTTP, its own failure. */
  ProxyLoop: 'PROXY_LOOP',
  ProxyRateLimited: 'PROXY_RATE_LIMITED',
  ProxyBusy: 'PROXY_BUSY',
  ProxyTimeout: 'PROXY_TIMEOUT',
  ProxyBadUpstream: 'PROXY_BAD_UPSTREAM',
  ProxyInternal: 'PROXY_INTERNAL',
  /** A foreign (non-distributable) layer whose source is not allowed, where the format needs its bytes. */
  ForeignLayer: 'FOREIGN_LAYER',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const ERROR_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** Whether `code` is one of ours (a registry or a worker may hand us any text). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && ERROR_CODES.has(code);
}

export interface ErrorJSON {
  name: 'LongshoreError';
  code: ErrorCode;
  message: string;
  hint?: string;
  retryable: boolean;
  data?: Record<string, unknown>;
}

export interface ErrorOptions {
  hint?: string;
  retryable?: boolean;
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class LongshoreError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LongshoreError';
    this.code = code;
    this.hint = options.hint;
    this.retryable = options.retryable ?? false;
    this.data = options.data ?? {};
  }

  toJSON(): ErrorJSON {
    const json: ErrorJSON = { name: 'LongshoreError', code: this.code, message: this.message, retryable: this.retryable };
    if (this.hint !== undefined) json.hint = this.hint;
    if (Object.keys(this.data).length > 0) json.data = this.data;
    return json;
  }

  static fromJSON(json: ErrorJSON): LongshoreError {
    const code = isErrorCode(json.code) ? json.code : ErrorCode.Internal;
    return new LongshoreError(code, json.message, { hint: json.hint, retryable: json.retryable, data: json.data });
  }

  /** Wrap anything thrown into a LongshoreError, keeping ours as they are. */
  static from(err: unknown): LongshoreError {
    if (err instanceof LongshoreError) return err;
    if (isAbortError(err)) return new AbortedError();
    if (isErrorJSON(err)) return LongshoreError.fromJSON(err);
    if (err === null || err === undefined) {
      // A browser API that rejects without a reason (WebKit's IndexedDB aborts with `error` null):
      // never show the person the word "null".
      return new LongshoreError(ErrorCode.Internal, `An operation failed without giving a reason (it rejected with ${String(err)}).`, {
        hint: 'Try again; if it keeps failing, this browser may not support something longshore needs (see "What this browser can do").',
        retryable: true,
      });
    }
    const message = err instanceof Error ? err.message || err.name : String(err);
    return new LongshoreError(ErrorCode.Internal, message, { cause: err });
  }
}

export class InvalidReferenceError extends LongshoreError {
  constructor(message: string, hint: string, data: Record<string, unknown> = {}) {
    super(ErrorCode.InvalidReference, message, { hint, data });
  }
}

export class AbortedError extends LongshoreError {
  constructor(message = 'The operation was cancelled.') {
    super(ErrorCode.Aborted, message);
  }
}

export function isAbortError(err: unknown): boolean {
  if (err instanceof LongshoreError) return err.code === ErrorCode.Aborted;
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

function isErrorJSON(value: unknown): value is ErrorJSON {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { name?: unknown }).name === 'LongshoreError' &&
    typeof (value as { code?: unknown }).code === 'string'
  );
}

/**
 * Data ended before its format says it should (a tar entry, a gzip or zstd stream): those errors
 * carry `data.truncated`, so callers tell a short download from corrupt bytes without reading text.
 */
export const TRUNCATED = { truncated: true } as const;

export function isTruncation(err: unknown): boolean {
  return err instanceof LongshoreError && err.data['truncated'] === true;
}

/** Throw AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError();
}
