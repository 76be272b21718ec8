// Registry error responses (distribution-spec "Error Codes") turned into typed errors that keep
// the registry's code and say whether a retry makes sense.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { readCapped } from '../http/transport.ts';

const ERROR_BODY_LIMIT = 64 * 1024;

interface SpecError {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

/** Codes we pass through as they are; anything else the registry says becomes REGISTRY. */
const KNOWN = new Set<string>([
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID', 'MANIFEST_UNKNOWN', 'MANIFEST_UNVERIFIED', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID',
  'TAG_INVALID', 'UNAUTHORIZED', 'DENIED', 'UNSUPPORTED', 'TOOMANYREQUESTS',
]);

/** Refusals by longshore's own proxy (src/proxy/handler.ts), in the same error envelope. */
const PROXY_CODES = new Set(['PROXY_DENIED', 'PROXY_UNREACHABLE']);

export interface RequestContext {
  /** What we were doing: 'manifest docker.io/library/alpine:latest'. */
  what: string;
  registry: string;
  repository?: string;
}

function hintFor(code: string, ctx: RequestContext): string {
  switch (code) {
    case 'MANIFEST_UNKNOWN':
      return `The tag or digest does not exist in ${ctx.repository ?? 'this repository'}. Check the spelling of the tag, or pull by an existing tag or digest.`;
    case 'NAME_UNKNOWN':
      return `The repository ${ctx.repository ?? ''} does not exist on ${ctx.registry}. Check the name (Docker Hub official images live under library/).`;
    case 'BLOB_UNKNOWN':
      return 'The registry lists a blob it cannot serve. The image is broken on the registry; try another tag.';
    case 'UNAUTHORIZED':
      return `${ctx.registry} wants credentials for this. If the repository is private, sign in; if it is public, check the name: registries answer "unauthorized" for names that do not exist too.`;
    case 'DENIED':
      return `Your credentials are not allowed to read this on ${ctx.registry}. Check the repository name and the account's permissions.`;
    case 'TOOMANYREQUESTS':
      return `${ctx.registry} is rate-limiting you. Wait a while (or sign in for a higher limit) and try again.`;
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
  let code: string | undefined = typeof first?.code === 'string' ? first.code.toUpperCase() : undefined;
  if (code !== undefined && !KNOWN.has(code) && !PROXY_CODES.has(code)) code = ErrorCode.Registry;
  if (code === undefined) {
    code = status === 401 ? 'UNAUTHORIZED'
      : status === 403 ? 'DENIED'
      : status === 429 ? 'TOOMANYREQUESTS'
      : status === 404 ? (ctx.what.startsWith('manifest') ? 'MANIFEST_UNKNOWN' : ctx.what.startsWith('blob') ? 'BLOB_UNKNOWN' : ErrorCode.Http)
      : ErrorCode.Http;
  }
  const registryMessage = typeof first?.message === 'string' ? first.message : text.trim().slice(0, 200);
  const message = `${ctx.what}: ${status} ${code}${registryMessage ? ` (${registryMessage})` : ''}`;
  const retryAfter = response.headers.get('retry-after');
  return new LongshoreError(code, message, {
    hint: code === 'PROXY_DENIED'
      ? `The longshore proxy refused to reach ${ctx.registry}. Add the registry to the proxy's config (see README, "Proxy configuration").`
      : code === 'PROXY_UNREACHABLE'
        ? `The longshore proxy could not connect to ${ctx.registry}. Check the host name and that the registry is up.`
        : hintFor(code, ctx),
    retryable: status === 429 || status >= 500,
    data: { status, registry: ctx.registry, repository: ctx.repository, errors: specErrors, retryAfter },
  });
}
