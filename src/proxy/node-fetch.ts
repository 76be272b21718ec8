// A fetch for the Node server built on node:http(s) with keep-alive agents. The handler stays
// written against the Fetch API; what this adds is a fast path: a body the handler only relays
// is piped from the upstream socket to the client socket by node-http.ts, without passing
// through web streams chunk by chunk (that conversion cost ~60 % of throughput here).
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Readable } from 'node:stream';

const sources = new WeakMap<ReadableStream<Uint8Array>, IncomingMessage>();

/** The upstream response behind a body from `nodeFetch`, while nobody has read it as a web stream. */
export function nodeSourceOf(body: ReadableStream<Uint8Array> | null): IncomingMessage | undefined {
  if (!body || body.locked) return undefined;
  return sources.get(body);
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);

export function createNodeFetch(): typeof fetch {
  const agents = {
    'http:': new HttpAgent({ keepAlive: true, maxSockets: 64 }),
    'https:': new HttpsAgent({ keepAlive: true, maxSockets: 64 }),
  };
  return (async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`unsupported protocol ${url.protocol}`);
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const method = init.method ?? 'GET';
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Response>((resolve, reject) => {
      const req = request(url, { method, headers, agent: agents[url.protocol as 'http:' | 'https:'], ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
        const out = new Headers();
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
          try {
            out.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          } catch {
            // a header value the Fetch API cannot hold: not one the proxy relays
          }
        }
        const status = res.statusCode ?? 502;
        if (method === 'HEAD' || NULL_BODY.has(status)) {
          res.resume();
          resolve(new Response(null, { status, headers: out }));
          return;
        }
        // Like fetch, hand back decoded bytes if the upstream encoded them anyway.
        const encoding = (res.headers['content-encoding'] ?? 'identity').toLowerCase();
        const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip()
          : encoding === 'deflate' ? createInflate()
          : encoding === 'br' ? createBrotliDecompress()
          : undefined;
        if (decoder) {
          resolve(new Response(Readable.toWeb(res.pipe(decoder)) as ReadableStream<Uint8Array>, { status, headers: out }));
          return;
        }
        // Converted to a web stream only if someone reads it; otherwise node-http.ts pipes `res`.
        let web: ReadableStream<Uint8Array> | undefined;
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            web ??= Readable.toWeb(res) as ReadableStream<Uint8Array>;
            const reader = web.getReader();
            try {
              const r = await reader.read();
              if (r.done) controller.close();
              else controller.enqueue(r.value);
            } finally {
              reader.releaseLock();
            }
          },
          cancel() {
            res.destroy();
          },
        }, { highWaterMark: 0 });
        sources.set(body, res);
        resolve(new Response(body, { status, headers: out }));
      });
      req.on('error', (err) => reject(new TypeError(`fetch failed: ${err.message}`, { cause: err })));
      req.end();
    });
  }) as typeof fetch;
}
