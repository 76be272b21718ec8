// A registry that misbehaves on purpose, written on raw TCP so it can send what no HTTP library
// would: status lines outside 200-599, garbage, headers that never end, bodies that stop,
// connections reset at every stage, encodings nobody asked for, loops back to the proxy. The
// repository name in `/v2/<case>/…` picks the behaviour.
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

export interface HostileUpstream {
  host: string;
  port: number;
  /** Where `loop` redirects: the proxy's own base URL, set once the proxy runs. */
  proxyBase: string;
  /** Connections the upstream has open right now (hung ones included). */
  openConnections(): number;
  close(): Promise<void>;
}

/** The cases, by repository name. `kind` says what a client must get back. */
export const HOSTILE_CASES = {
  status600: { kind: 'error', expect: 502 },
  status099: { kind: 'error', expect: 502 },
  garbage: { kind: 'error', expect: 502 },
  silent: { kind: 'error', expect: 504 }, // accepts, never answers
  statusonly: { kind: 'error', expect: 504 }, // a status line, then nothing
  trickle: { kind: 'error', expect: 504 }, // a header byte now and then, forever
  informational: { kind: 'error', expect: 504 }, // 100 Continue, then nothing
  reset: { kind: 'error', expect: 502 }, // closes the connection at once
  resetheaders: { kind: 'error', expect: 502 }, // resets in the middle of the headers
  hugeheaders: { kind: 'error', expect: 502 }, // 100 KB of headers
  gzipbomb: { kind: 'error', expect: 502 }, // 1 MB of gzip that expands to 1 GiB
  brotli: { kind: 'error', expect: 502 },
  loop: { kind: 'error', expect: 508 }, // redirects to the proxy's own /proxy URL
  headershang: { kind: 'cut', expect: 200 }, // headers promise a body that never comes
  stall: { kind: 'cut', expect: 200 }, // half the body, then silence
  resetbody: { kind: 'cut', expect: 200 }, // half the body, then a reset
  html: { kind: 'html', expect: 200 },
} as const;

export type HostileCase = keyof typeof HOSTILE_CASES;

/** 1 MiB of zeros compressed, about 1 KB; repeated 1024 times in the gzip bomb. */
const BOMB = (() => {
  const member = gzipSync(Buffer.alloc(1024 * 1024));
  return Buffer.concat(Array.from({ length: 1024 }, () => member));
})();

export async function startHostileUpstream(): Promise<HostileUpstream> {
  const sockets = new Set<Socket>();
  const upstream: HostileUpstream = {
    host: '',
    port: 0,
    proxyBase: '',
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', function onData(chunk: Buffer) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      const path = head.split(' ')[1] ?? '/';
      const name = /^\/v2\/([a-z0-9]+)\//.exec(path)?.[1] ?? '';
      behave(name, path, socket, upstream);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.port = (server.address() as AddressInfo).port;
  upstream.host = `127.0.0.1:${upstream.port}`;
  return upstream;
}

function behave(name: string, path: string, socket: Socket, upstream: HostileUpstream): void {
  const body = Buffer.alloc(100_000, 7);
  const ok = (headers: string) => `HTTP/1.1 200 OK\r\n${headers}\r\n`;
  switch (name as HostileCase) {
    case 'status600':
      socket.end('HTTP/1.1 600 Beyond\r\nContent-Length: 2\r\n\r\nhi');
      return;
    case 'status099':
      socket.end('HTTP/1.1 099 Below\r\nContent-Length: 2\r\n\r\nhi');
      return;
    case 'garbage':
      socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n');
      return;
    case 'silent':
      return;
    case 'statusonly':
      socket.write('HTTP/1.1 200 OK\r\n');
      return;
    case 'trickle': {
      socket.write('HTTP/1.1 200 OK\r\nX-Slow: ');
      const timer = setInterval(() => socket.write('a'), 100);
      socket.on('close', () => clearInterval(timer));
      return;
    }
    case 'informational':
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      return;
    case 'reset':
      socket.resetAndDestroy();
      return;
    case 'resetheaders':
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: appl');
      setTimeout(() => socket.resetAndDestroy(), 20);
      return;
    case 'hugeheaders':
      socket.end(
        ok(`Content-Length: 2\r\n${Array.from({ length: 100 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}`) + 'hi',
      );
      return;
    case 'gzipbomb':
      socket.end(
        Buffer.concat([
          Buffer.from(ok(`Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: ${BOMB.length}\r\n`), 'latin1'),
          BOMB,
        ]),
      );
      return;
    case 'brotli':
      socket.end(ok('Content-Encoding: br\r\nContent-Length: 4\r\n') + 'abcd');
      return;
    case 'loop':
      socket.end(
        `HTTP/1.1 307 Temporary Redirect\r\nLocation: ${upstream.proxyBase}proxy/${upstream.host}${path}\r\nContent-Length: 0\r\n\r\n`,
      );
      return;
    case 'headershang':
      socket.write(ok(`Content-Length: ${body.length}\r\n`));
      return;
    case 'stall':
      socket.write(ok(`Content-Length: ${body.length}\r\n`));
      socket.write(body.subarray(0, body.length / 2));
      return;
    case 'resetbody':
      socket.write(ok(`Content-Length: ${body.length}\r\n`));
      socket.write(body.subarray(0, body.length / 2), () => setTimeout(() => socket.resetAndDestroy(), 20));
      return;
    case 'html':
      socket.end(ok('Content-Type: text/html\r\nContent-Length: 45\r\n') + '<script>alert(document.cookie)</script>hello!');
      return;
    default:
      if (name === 'endless') {
        // A blob that never ends, written as fast as the reader takes it (for never-reading clients).
        socket.write(ok(`Content-Type: application/octet-stream\r\nContent-Length: ${2 ** 40}\r\n`));
        const chunk = Buffer.alloc(64 * 1024);
        const pump = () => {
          while (!socket.destroyed && socket.write(chunk));
        };
        socket.on('drain', pump);
        pump();
        return;
      }
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
  }
}
