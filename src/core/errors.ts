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
  Internal: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface ErrorJSON {
  name: 'LongshoreError';
  code: string;
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
  readonly code: string;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly data: Record<string, unknown>;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
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
    return new LongshoreError(json.code, json.message, { hint: json.hint, retryable: json.retryable, data: json.data });
  }

  /** Wrap anything thrown into a LongshoreError, keeping ours as they are. */
  static from(err: unknown): LongshoreError {
    if (err instanceof LongshoreError) return err;
    if (isAbortError(err)) return new AbortedError();
    if (isErrorJSON(err)) return LongshoreError.fromJSON(err);
    if (err === null || err === undefined) {
      // A browser API that rejects without a reason (WebKit's IndexedDB aborts with `error` null):
      // never show the person the word "null".
      return new LongshoreError(ErrorCode.Internal, `An operation failed without giving a reason (it rejected with ${String(err)}).`, { hint: 'Try again; if it keeps failing, this browser may not support something longshore needs (see "What this browser can do").', retryable: true });
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
  return typeof value === 'object' && value !== null && (value as { name?: unknown }).name === 'LongshoreError'
    && typeof (value as { code?: unknown }).code === 'string';
}

/** Throw AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError();
}
