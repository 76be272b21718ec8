// Registry error responses (distribution-spec "Error Codes") turned into typed errors that keep
// the registry's code and say whether a retry makes sense.
import { ErrorCode, LongshoreError, isErrorCode } from '../errors.ts';
import { readCapped } from '../http/transport.ts';

const ERROR_BODY_LIMIT = 64 * 1024;

interface SpecError {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

/** distribution-spec "Error Codes" we pass through as they are, and our proxy's refusals. */
const KNOWN: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.BlobUnknown, ErrorCode.BlobUploadInvalid, ErrorCode.BlobUploadUnknown, ErrorCode.DigestInvalid,
  ErrorCode.ManifestBlobUnknown, ErrorCode.ManifestInvalid, ErrorCode.ManifestUnknown, ErrorCode.ManifestUnverified,
  ErrorCode.NameInvalid, ErrorCode.NameUnknown, ErrorCode.SizeInvalid, ErrorCode.TagInvalid, ErrorCode.Unauthorized,
  ErrorCode.Denied, ErrorCode.Unsupported, ErrorCode.TooManyRequests, ErrorCode.ProxyDenied, ErrorCode.ProxyUnreachable,
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
    case 401: return ErrorCode.Unauthorized;
    case 403: return ErrorCode.Denied;
    case 429: return ErrorCode.TooManyRequests;
    case 404: return what.startsWith('manifest') ? ErrorCode.ManifestUnknown : what.startsWith('blob') ? ErrorCode.BlobUnknown : ErrorCode.Http;
    default: return ErrorCode.Http;
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
    case ErrorCode.ProxyDenied:
      return `The longshore proxy refused to reach ${ctx.registry}. Add the registry to the proxy's config (see README, "Proxy configuration").`;
    case ErrorCode.ProxyUnreachable:
      return `The longshore proxy could not connect to ${ctx.registry}. Check the host name and that the registry is up.`;
    default:
      return `The registry ${ctx.registry} refused the request.`;
  }
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
  const first = specErrors[0];
  const status = response.status;
  const code = knownCode(first?.code) ?? codeForStatus(status, ctx.what);
  const registryMessage = typeof first?.message === 'string' ? first.message : text.trim().slice(0, 200);
  const message = `${ctx.what}: ${status} ${code}${registryMessage ? ` (${registryMessage})` : ''}`;
  const retryAfter = response.headers.get('retry-after');
  return new LongshoreError(code, message, {
    hint: hintFor(code, ctx),
    retryable: status === 429 || status >= 500,
    data: { status, registry: ctx.registry, repository: ctx.repository, errors: specErrors, retryAfter },
  });
}
