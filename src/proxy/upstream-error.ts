// What can go wrong between the proxy and an upstream, as one error class with a stable `kind`,
// so every runtime's fetch failure (node:http here, undici, workerd) maps to one answer: a
// status and a distribution-style error code the browser client shows.

export type UpstreamFailure =
  | 'connect-timeout' // no TCP/TLS connection within timeouts.connectMs
  | 'headers-timeout' // no status line + headers within timeouts.headersMs
  | 'body-timeout' // a relayed body made no progress within timeouts.bodyIdleMs
  | 'pool-busy' // no pooled connection to that origin within timeouts.poolWaitMs
  | 'unreachable' // refused, no route, name does not resolve
  | 'reset' // the connection broke
  | 'header-overflow' // headers larger than the parser accepts
  | 'bad-status' // a status line outside 200-599 or unreadable
  | 'encoding' // a Content-Encoding the proxy did not ask for
  | 'client-gone'; // the client went away (not an upstream fault; logged only)

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpstreamError';
  }
}

export const PROXY_UNREACHABLE = 'PROXY_UNREACHABLE';
export const PROXY_BAD_UPSTREAM = 'PROXY_BAD_UPSTREAM';
export const PROXY_TIMEOUT = 'PROXY_TIMEOUT';
export const PROXY_BUSY = 'PROXY_BUSY';

/** The answer the client gets for a failure before any byte of the response was sent. */
export function failureResponse(kind: UpstreamFailure): { status: number; code: string } {
  switch (kind) {
    case 'pool-busy':
      return { status: 503, code: PROXY_BUSY };
    case 'connect-timeout':
    case 'headers-timeout':
    case 'body-timeout':
      return { status: 504, code: PROXY_TIMEOUT };
    case 'unreachable':
      return { status: 502, code: PROXY_UNREACHABLE };
    default:
      return { status: 502, code: PROXY_BAD_UPSTREAM };
  }
}

/** Any fetch rejection → an UpstreamError (undici and workerd report causes differently). */
export function classifyFailure(err: unknown, host: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const code =
    typeof cause?.code === 'string'
      ? cause.code
      : typeof (err as { code?: unknown })?.code === 'string'
        ? String((err as { code: string }).code)
        : '';
  const text = err instanceof Error ? err.message : String(err);
  const detail = code || (typeof cause?.message === 'string' ? cause.message : '');
  const said = detail && !text.includes(detail) ? `${text} (${detail})` : text;
  if (/HEADERS_OVERFLOW|HPE_HEADER_OVERFLOW/i.test(code + text)) {
    return new UpstreamError('header-overflow', `upstream ${host} sent response headers larger than the proxy accepts`, { cause: err });
  }
  if (/ECONNRESET|EPIPE|UND_ERR_SOCKET|socket hang up|other side closed/i.test(code + text)) {
    return new UpstreamError('reset', `upstream ${host} closed the connection before answering: ${said}`, { cause: err });
  }
  if (/HPE_|INVALID_STATUS|Parse Error/i.test(code + text)) {
    return new UpstreamError('bad-status', `upstream ${host} sent an unreadable response: ${said}`, { cause: err });
  }
  if (/CONNECT_TIMEOUT|ETIMEDOUT/i.test(code + text)) {
    return new UpstreamError('connect-timeout', `upstream ${host} did not accept a connection in time: ${said}`, { cause: err });
  }
  return new UpstreamError('unreachable', `upstream ${host} is unreachable: ${said}`, { cause: err });
}
