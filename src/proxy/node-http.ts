// node:http ↔ Fetch API glue for the proxy handler: an IncomingMessage becomes a Request whose
// signal fires when the client goes away, and a Response is written back by streaming its body
// chunk by chunk with backpressure (no buffering, no per-chunk copies). Used by serve.ts and the
// Vite plugin (connect middleware).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PROXY_PATH } from './config.ts';
import { PROXY_DENIED, PROXY_INTERNAL, refusal, type ProxyHandler } from './handler.ts';
import { countPiped, endsOnCut, markFailure, nodeSourceOf } from './node-fetch.ts';

export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/**
 * A Fetch Request for `req`, without its body: the proxy forwards only GET and HEAD. The
 * returned signal aborts when the response is closed before it finished (client gone).
 */
export function toFetchRequest(req: IncomingMessage, res: ServerResponse): Request {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name.startsWith(':')) continue;
    try {
      if (Array.isArray(value)) for (const v of value) headers.append(name, v);
      else headers.set(name, value);
    } catch {
      // A header value fetch cannot carry; none of the forwarded ones are like that.
    }
  }
  // Never resolve req.url against a base: `//evil.example/x` must stay a path.
  const host = /^[a-z0-9.:[\]-]+$/i.test(req.headers.host ?? '') ? req.headers.host! : 'localhost';
  return new Request(`http://${host}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, signal: controller.signal });
}

/** Writes `response` to `res`, streaming the body with backpressure. */
export async function sendFetchResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  if (response.statusText) res.writeHead(response.status, response.statusText, headers);
  else res.writeHead(response.status, headers);
  const body = response.body;
  if (!body) {
    res.end();
    return;
  }
  // The client sees the status at once, even if the first body byte is slow to come.
  res.flushHeaders();
  const source = nodeSourceOf(body);
  if (source) {
    // Relayed as it came: socket to socket (see node-fetch.ts).
    // Upstream broke off mid-body: cut the client's connection (the only honest signal left), or
    // end its chunked body where the bytes stop when the client asked for that (endOnCut).
    const endOnCut = endsOnCut(source);
    const broken = (err: Error) => {
      if (res.writableEnded || res.destroyed) return;
      if (endOnCut) res.end();
      else res.destroy(err);
    };
    await new Promise<void>((resolve) => {
      source.once('error', broken);
      source.once('aborted', () => broken(new Error('upstream aborted')));
      res.once('close', () => {
        if (!source.complete) {
          markFailure(source, 'client-gone');
          source.destroy();
        }
        resolve();
      });
      countPiped(source);
      source.pipe(res);
    });
    return;
  }
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          const go = () => {
            res.off('drain', go);
            res.off('close', go);
            resolve();
          };
          res.on('drain', go);
          res.on('close', go);
        });
      }
      if (res.destroyed) {
        await reader.cancel().catch(() => undefined);
        return;
      }
    }
    res.end();
  } catch (err) {
    // Upstream broke off mid-body: the only honest signal left is to cut the connection.
    res.destroy(err instanceof Error ? err : new Error(String(err)));
    await reader.cancel().catch(() => undefined);
  }
}

export interface MiddlewareOptions {
  /** Take the client from the last X-Forwarded-For hop (only behind a proxy that sets it). */
  trustForwardedFor?: boolean;
}

/** The client's address: the socket peer, or what a trusted reverse proxy in front says. */
export function clientOf(req: IncomingMessage, trustForwardedFor = false): string {
  if (trustForwardedFor) {
    const header = req.headers['x-forwarded-for'];
    const value = Array.isArray(header) ? header.join(',') : header;
    // nginx's $proxy_add_x_forwarded_for appends the peer it saw: the last hop is the one to trust.
    const last = value
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .at(-1);
    if (last) return last.slice(0, 64);
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** Connect-style middleware (Vite, node:http) around a Fetch handler; `next()` when it declines. */
export function nodeMiddleware(handler: ProxyHandler, options: MiddlewareOptions = {}): Middleware {
  return (req, res, next) => {
    let request: Request;
    try {
      request = toFetchRequest(req, res);
    } catch {
      // `new Request` rejects some methods (CONNECT, TRACE); under the proxy path that is a 405.
      if (isProxyPath(req.url)) {
        void sendFetchResponse(
          res,
          refusal(405, PROXY_DENIED, `method ${req.method} is not allowed through the proxy (only GET and HEAD)`, null),
        );
      } else {
        next();
      }
      return;
    }
    handler(request, { client: clientOf(req, options.trustForwardedFor) })
      .then((response) => (response ? sendFetchResponse(res, response) : next()))
      .catch((err: unknown) => {
        if (res.headersSent) res.destroy();
        else if (isProxyPath(req.url))
          void sendFetchResponse(
            res,
            refusal(500, PROXY_INTERNAL, `the proxy failed on this request: ${err instanceof Error ? err.message : String(err)}`, null),
          ).catch(() => res.destroy());
        else next(err);
      });
  };
}

function isProxyPath(url: string | undefined): boolean {
  if (url === undefined) return false;
  const path = url.replace(/[?#].*$/, '');
  return path === PROXY_PATH || path.startsWith(`${PROXY_PATH}/`);
}
