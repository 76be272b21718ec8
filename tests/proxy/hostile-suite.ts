// The hostile-upstream families, as one suite run against each way the proxy is deployed: the
// node server as `npm start` runs it (hostile.test.ts) and the same handler inside workerd
// (workerd.test.ts). Whatever the upstream does, every client gets an answer: before the
// headers a distribution-style error naming the cause, after them a cut connection (the only
// honest signal left; or, for a client that asked, a clean end where the bytes stop), and the
// proxy keeps serving everyone else.
import { request as httpRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import { HOSTILE_CASES, type HostileCase, type HostileUpstream } from './hostile-upstream.ts';
import type { FakeServer } from './fakes.ts';

export interface SuiteTarget {
  /** The proxy's base URL, ending in `/`. */
  url: string;
  hostile: HostileUpstream;
  /** A well-behaved registry on another port. */
  healthy: FakeServer;
  /** Whether the error codes are the node server's exact ones (workerd's fetch reports less). */
  exactCodes: boolean;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body ended early (reset or cut by the proxy). */
  cut: boolean;
}

/** A raw GET that reports a cut body instead of throwing. */
export function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      const done = (cut: boolean) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), cut });
      res.on('end', () => done(!res.complete));
      res.on('error', () => done(true));
      res.on('aborted', () => done(true));
    });
    req.on('error', reject);
    req.end();
  });
}

export function envelopeOf(answer: Answer): { code: string; message: string } {
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  const parsed = JSON.parse(answer.body.toString()) as { errors: { code: string; message: string }[] };
  expect(parsed.errors).toHaveLength(1);
  return parsed.errors[0]!;
}

const caseUrl = (t: SuiteTarget, name: string) => `${t.url}proxy/${t.hostile.host}/v2/${name}/manifests/latest`;

export function hostileSuite(target: () => SuiteTarget): void {
  const errorCases = (Object.keys(HOSTILE_CASES) as HostileCase[]).filter((c) => HOSTILE_CASES[c].kind === 'error');
  const cutCases = (Object.keys(HOSTILE_CASES) as HostileCase[]).filter((c) => HOSTILE_CASES[c].kind === 'cut');

  describe('hostile upstream', () => {
    it.each(errorCases)('%s: a distribution-style error before any header', async (name) => {
      const t = target();
      const answer = await get(caseUrl(t, name));
      if (!t.exactCodes && name === 'hugeheaders' && answer.status === 200) {
        // workerd's parser takes 100 KB of headers; the proxy still relays none of them.
        expect(Object.keys(answer.headers).filter((h) => h.startsWith('x-pad'))).toEqual([]);
        return;
      }
      const error = envelopeOf(answer);
      expect(error.code).toMatch(/^PROXY_[A-Z_]+$/);
      if (t.exactCodes) {
        expect(answer.status).toBe(HOSTILE_CASES[name].expect);
        expect(error.message).toMatch(name === 'loop' ? /this proxy itself/ : new RegExp(t.hostile.host.replace(/\./g, '\\.')));
      } else {
        expect(answer.status).toBeGreaterThanOrEqual(500);
      }
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
    });

    it.each(cutCases)('%s: headers relayed, then the body is cut, not left hanging', async (name) => {
      const answer = await get(caseUrl(target(), name));
      expect(answer.status).toBe(200);
      expect(answer.cut).toBe(true);
      expect(answer.body.length).toBeLessThan(100_000);
    });

    // longshore's client asks for a clean end (x-longshore-on-cut: end): a browser drops what it
    // still holds of a failed body, a cleanly ended one it hands over whole; the client knows the
    // size and resumes with Range from the last byte it got.
    it.each(cutCases)('%s, asked to end on a cut: the body ends cleanly after every byte that came, no Content-Length', async (name) => {
      const answer = await get(caseUrl(target(), name), { 'x-longshore-on-cut': 'end' });
      expect(answer.status).toBe(200);
      expect(answer.headers['content-length']).toBeUndefined();
      expect(answer.headers['transfer-encoding']).toBe('chunked');
      // As for every relayed body: Chromium buffers one ahead of the page without it (README, Performance).
      expect(answer.headers['cache-control']).toBe('no-store');
      expect(answer.cut).toBe(false);
      expect(answer.body.length).toBe(name === 'headershang' ? 0 : 50_000);
    });

    it('html: served as upstream data, never as a page of the app', async () => {
      const answer = await get(caseUrl(target(), 'html'));
      expect(answer.status).toBe(200);
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
      expect(answer.headers['content-security-policy']).toBe("sandbox; default-src 'none'");
    });

    it('gzip bomb: refused, not decoded (no GiB relayed)', async () => {
      const answer = await get(caseUrl(target(), 'gzipbomb'));
      expect(answer.body.length).toBeLessThan(10_000);
      expect(envelopeOf(answer).message).toMatch(/Content-Encoding: gzip|encoding/i);
    });

    it('a request that already carries our Via is refused as a loop', async () => {
      const t = target();
      const answer = await get(`${t.url}proxy/${t.healthy.host}/v2/x/manifests/latest`, { via: '1.1 longshore' });
      expect(answer.status).toBe(508);
      expect(envelopeOf(answer).code).toBe('PROXY_LOOP');
    });

    it('after all that, other registries are served as before', async () => {
      const t = target();
      const answer = await get(`${t.url}proxy/${t.healthy.host}/v2/x/manifests/latest`);
      expect(answer.status).toBe(200);
      expect(answer.body.toString()).toBe('{"ok":true}');
      expect(answer.headers['via']).toBe('1.1 longshore');
    });
  });
}
