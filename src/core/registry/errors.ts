// Registry error responses (distribution-spec "Error Codes") turned into typed errors that keep
// the registry's code and say whether a retry makes sense. Answers people meet that are not in
// the spec get their own code, one line saying what happened and a next step: Docker Hub's 401
// for a missing repository, an HTML page from something in between, longshore's proxy refusing
// a host or unable to reach it.
import { ErrorCode, LongshoreError, isErrorCode } from '../errors.ts';
import { challengeOf, readCapped } from '../http/transport.ts';
import { isRetryableStatus } from '../http/retry.ts';
import { parseChallenges } from './challenge.ts';

const ERROR_BODY_LIMIT = 64 * 1024;

interface SpecError {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

/** distribution-spec "Error Codes" we pass through as they are, and our proxy's refusals. */
const KNOWN: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.BlobUnknown,
  ErrorCode.BlobUploadInvalid,
  ErrorCode.BlobUploadUnknown,
  ErrorCode.DigestInvalid,
  ErrorCode.ManifestBlobUnknown,
  ErrorCode.ManifestInvalid,
  ErrorCode.ManifestUnknown,
  ErrorCode.ManifestUnverified,
  ErrorCode.NameInvalid,
  ErrorCode.NameUnknown,
  ErrorCode.SizeInvalid,
  ErrorCode.TagInvalid,
  ErrorCode.Unauthorized,
  ErrorCode.Denied,
  ErrorCode.Unsupported,
  ErrorCode.TooManyRequests,
  ErrorCode.ProxyDenied,
  ErrorCode.ProxyUnreachable,
  ErrorCode.ProxyLoop,
  ErrorCode.ProxyRateLimited,
  ErrorCode.ProxyBusy,
  ErrorCode.ProxyTimeout,
  ErrorCode.ProxyBadUpstream,
  ErrorCode.ProxyInternal,
]);

/** The registry's code if it is one we know; anything else it says becomes REGISTRY. */
function knownCode(code: unknown): ErrorCode | undefined {
  if (typeof code !== 'string') return undefined;
  const upper = code.toUpperCase();
  return isErrorCode(upper) && KNOWN.has(upper) ? upper : ErrorCode.Registry;
}

/** No usable code in the body: say what the status says (distribution-spec maps these). */
function codeForStatus(status: number, what: string): ErrorCode {
  switch (status) {
    case 401:
      return ErrorCode.Unauthorized;
    case 403:
      return ErrorCode.Denied;
    case 429:
      return ErrorCode.TooManyRequests;
    case 404:
      return what.startsWith('manifest') ? ErrorCode.ManifestUnknown : what.startsWith('blob') ? ErrorCode.BlobUnknown : ErrorCode.Http;
    default:
      return ErrorCode.Http;
  }
}

export interface RequestContext {
  /** What we were doing: 'manifest docker.io/library/alpine:latest'. */
  what: string;
  registry: string;
  repository?: string;
}

function hintFor(code: ErrorCode, ctx: RequestContext): string {
  switch (code) {
    case ErrorCode.ManifestUnknown:
      return `The tag or digest does not exist in ${ctx.repository ?? 'this repository'}. Check the spelling of the tag, or pull by an existing tag or digest.`;
    case ErrorCode.NameUnknown:
      return `The repository ${ctx.repository ?? ''} does not exist on ${ctx.registry}. Check the name (Docker Hub official images live under library/).`;
    case ErrorCode.BlobUnknown:
      return 'The registry lists a blob it cannot serve. The image is broken on the registry; try another tag.';
    case ErrorCode.Unauthorized:
      return `${ctx.registry} wants credentials for this. If the repository is private, sign in; if it is public, check the name: registries answer "unauthorized" for names that do not exist too.`;
    case ErrorCode.Denied:
      return `Your credentials are not allowed to read this on ${ctx.registry}. Check the repository name and the account's permissions.`;
    case ErrorCode.TooManyRequests:
      return `${ctx.registry} is rate-limiting you. Wait a while (or sign in for a higher limit) and try again.`;
    case ErrorCode.NotFoundOrPrivate:
      return `Check the spelling of ${ctx.repository ?? 'the repository'} (Docker Hub official images live under library/); if it is private, sign in for ${ctx.registry} with an account that can read it.`;
    case ErrorCode.ProxyLoop:
      return `${ctx.registry} sent longshore's proxy back to itself. Check the proxy's config: a registry or mirror must not point at the proxy.`;
    case ErrorCode.ProxyRateLimited:
      return 'This browser sent the proxy more requests or streams than it allows at once; longshore waits and retries. If it lasts, raise the per-client limits in the proxy config.';
    case ErrorCode.ProxyBusy:
      return `The proxy has no free connection to ${ctx.registry} right now; longshore waits and retries. If it lasts, the proxy's operator should raise its connection limits or add instances.`;
    case ErrorCode.ProxyTimeout:
      return `${ctx.registry} stopped answering the proxy in time. Try again; if it lasts, the registry is overloaded or down.`;
    case ErrorCode.ProxyBadUpstream:
      return `${ctx.registry} (or a host it redirected to) answered with something that is not valid HTTP for a registry. Try again later, or report it to the registry.`;
    case ErrorCode.ProxyInternal:
      return "longshore's proxy failed on this request. Try again; its log says why.";
    default:
      return `The registry ${ctx.registry} refused the request.`;
  }
}

/** The host longshore's proxy was asked for: `/proxy/HOST/…` in the response URL, else the registry. */
function proxiedHost(response: Response, ctx: RequestContext): string {
  try {
    return /^\/proxy\/([^/]+)\//.exec(new URL(response.url).pathname)?.[1] ?? ctx.registry;
  } catch {
    return ctx.registry;
  }
}

function proxyDeniedHint(host: string): string {
  const url = `${/^(localhost|127\.|\[::1\])/.test(host) ? 'http' : 'https'}://${host}`;
  return (
    `Allow it where longshore runs: start it with LONGSHORE_REGISTRIES=${url} (a comma list, added to the defaults), ` +
    `or add "${url}" to the "registries" list of the LONGSHORE_CONFIG file (README, "Proxy configuration").`
  );
}

/** An HTML document instead of a registry answer: by Content-Type, or by its first bytes. */
function isHtml(contentType: string, text: string): boolean {
  return /^text\/html\b/i.test(contentType) || /^\s*<(!doctype html|html[\s>])/i.test(text);
}

/** The page's <title> (or first heading), as plain text, for the message. */
function htmlTitle(text: string): string {
  const raw = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(text)?.[1] ?? /<h1[^>]*>([\s\S]*?)<\/h1>/i.exec(text)?.[1] ?? '';
  return raw
    .replace(/<[^>]*>/g, '')
    .replace(/&[a-z]+;|&#\d+;/gi, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 120);
}

/** Docker Hub's (and distribution's) answer to a token that grants nothing: 401 + error="insufficient_scope". */
function insufficientScope(response: Response): boolean {
  return response.status === 401 && parseChallenges(challengeOf(response)).some((c) => c.params['error'] === 'insufficient_scope');
}

/** Build the typed error for a non-2xx registry response; reads at most 64 KiB of the body. */
export async function registryError(response: Response, ctx: RequestContext): Promise<LongshoreError> {
  const bytes = await readCapped(response.body, ERROR_BODY_LIMIT).catch(() => undefined);
  let specErrors: SpecError[] = [];
  let text = '';
  if (bytes) {
    text = new TextDecoder().decode(bytes);
    try {
      const parsed = JSON.parse(text) as { errors?: unknown };
      if (Array.isArray(parsed.errors)) specErrors = parsed.errors as SpecError[];
    } catch {
      // not JSON: keep the text for the message
    }
  }
  const status = response.status;
  const retryAfter = response.headers.get('retry-after');
  const retryable = isRetryableStatus(status);
  const base = { status, registry: ctx.registry, repository: ctx.repository, errors: specErrors, retryAfter };

  if (specErrors.length === 0 && isHtml(response.headers.get('content-type') ?? '', text)) {
    const title = htmlTitle(text);
    return new LongshoreError(
      ErrorCode.ErrorPage,
      `${ctx.what}: ${status}, a web page${title ? ` ("${title}")` : ''} came back instead of a registry answer.`,
      {
        hint:
          status >= 500
            ? `Something between you and ${ctx.registry} (a corporate proxy, load balancer or the registry's front end) is failing. Try again in a few minutes; if it lasts, check the registry's status page or your network's proxy.`
            : `Something between you and ${ctx.registry} (a corporate proxy, captive portal or firewall) answered instead of the registry. Check that ${ctx.registry} is reachable from your network.`,
        retryable,
        data: { ...base, title },
      },
    );
  }

  const first = specErrors[0];
  const code = knownCode(first?.code) ?? codeForStatus(status, ctx.what);
  const registryMessage = typeof first?.message === 'string' ? first.message : text.trim().slice(0, 200);

  if (code === ErrorCode.ProxyDenied) {
    const host = proxiedHost(response, ctx);
    return new LongshoreError(
      code,
      `${ctx.what}: longshore's proxy is not allowed to reach ${host}${registryMessage ? ` (${registryMessage})` : ''}.`,
      {
        hint: proxyDeniedHint(host),
        data: { ...base, host },
      },
    );
  }
  if (code === ErrorCode.ProxyUnreachable) {
    const host = proxiedHost(response, ctx);
    return new LongshoreError(
      code,
      `${ctx.what}: ${host} did not answer; the registry is down or the host name is wrong${registryMessage ? ` (${registryMessage})` : ''}.`,
      {
        hint: `Check the host name ${host}, then try again later (longshore already retried).`,
        retryable,
        data: { ...base, host },
      },
    );
  }
  if (insufficientScope(response) && (code === ErrorCode.Unauthorized || code === ErrorCode.Denied)) {
    return new LongshoreError(
      ErrorCode.NotFoundOrPrivate,
      `${ctx.what}: not found, or private (${ctx.registry} answered 401 insufficient_scope, as Docker Hub does for both).`,
      {
        hint: hintFor(ErrorCode.NotFoundOrPrivate, ctx),
        data: base,
      },
    );
  }
  const message = `${ctx.what}: ${status} ${code}${registryMessage ? ` (${registryMessage})` : ''}`;
  return new LongshoreError(code, message, { hint: hintFor(code, ctx), retryable, data: base });
}
