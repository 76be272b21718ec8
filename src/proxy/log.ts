// One JSON line per proxied request. What is logged is chosen, not filtered: never headers
// (Authorization, cookies), and of a query only the parameter names plus the values of the few
// parameters that carry no secret (a token realm's `service` and `scope`, pagination).

export interface RequestLogEntry {
  time: string;
  client: string;
  method: string;
  /** The `HOST[:PORT]` after /proxy/ (as the client wrote it). */
  registry: string;
  /** Path and query with secrets redacted. */
  path: string;
  status: number;
  /** Body bytes relayed to the client. */
  bytes: number;
  /** From the request arriving to the body's end. */
  ms: number;
  /** Why it was refused or cut short (an error kind), when it was. */
  error?: string;
}

/** Query parameters whose values are kept: distribution pagination and token scope. */
const SAFE_QUERY_PARAMETERS = new Set(['service', 'scope', 'n', 'last']);
export const REDACTED = 'REDACTED';

/** `/proxy/HOST/PATH` + query → HOST and the path with any query secrets replaced. */
export function describeTarget(pathname: string, search: string): { registry: string; path: string } {
  const rest = pathname.replace(/^\/proxy\/?/, '');
  const slash = rest.indexOf('/');
  const registry = (slash < 0 ? rest : rest.slice(0, slash)).slice(0, 255);
  const path = (slash < 0 ? '/' : rest.slice(slash)).slice(0, 1024);
  return { registry, path: path + redactQuery(search) };
}

export function redactQuery(search: string): string {
  if (search === '' || search === '?') return '';
  const params = new URLSearchParams(search);
  const kept = new URLSearchParams();
  for (const [name, value] of params) kept.append(name, SAFE_QUERY_PARAMETERS.has(name.toLowerCase()) ? value : REDACTED);
  return `?${kept.toString()}`;
}

/** Writes entries as JSON lines to `write` (stdout in serve.ts). */
export function jsonLines(write: (line: string) => void): (entry: RequestLogEntry) => void {
  return (entry) => write(`${JSON.stringify(entry)}\n`);
}

/**
 * Joins writes made within `ms` into one (stdout to a pipe is a blocking write per call on
 * Linux: one per request cost ~7 % of the proxy's CPU under load). `flush()` writes the rest.
 */
export function batched(write: (text: string) => void, ms = 50): { write: (text: string) => void; flush: () => void } {
  let pending: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    write(text);
  };
  return {
    write: (text) => {
      pending.push(text);
      if (pending.length >= 256) flush();
      else timer ??= setTimeout(flush, ms);
    },
    flush,
  };
}
