// Error codes come from one list (src/core/errors.ts): no code is written as a string literal
// elsewhere, no error is classified by its message text, a registry's code is kept only when it is
// on the list, and a truncation is told by its data, not its words.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode, LongshoreError, isErrorCode, isTruncation } from '../../src/core/errors.ts';
import { registryError } from '../../src/core/registry/errors.ts';
import { listLayer } from '../../src/core/listing/index.ts';
import { TarEntryType, tarBytes } from '../../src/core/tar/index.ts';
import { gzipSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '../..');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|svelte)$/.test(name) ? [p] : [];
  });
}

const sources = ['src/core', 'src/browser', 'src/ui']
  .flatMap((d) => files(join(root, d)))
  .filter((f) => !f.endsWith(join('src', 'core', 'errors.ts')));

describe('one list of error codes', () => {
  it('no source outside errors.ts writes a code as a string literal', () => {
    const codes = Object.values(ErrorCode).join('|');
    const literal = new RegExp(`['"\`](?:${codes})['"\`]`);
    const found = sources.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${relative(root, f)}:${i + 1}` }))
        .filter(({ line }) => literal.test(line))
        .map(({ at, line }) => `${at}: ${line.trim()}`),
    );
    expect(found).toEqual([]);
  });

  it('no source classifies an error by its message text', () => {
    const byText = /\.test\([^)]*\bmessage\b|\bmessage\b[^;]*\.(?:includes|startsWith|endsWith|match)\(/;
    const found = sources.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .map((line, i) => ({ line, at: `${relative(root, f)}:${i + 1}` }))
        .filter(({ line }) => byText.test(line))
        .map(({ at, line }) => `${at}: ${line.trim()}`),
    );
    expect(found).toEqual([]);
  });

  it('an unknown code from across a worker boundary becomes INTERNAL, a known one stays', () => {
    expect(isErrorCode('MANIFEST_UNKNOWN')).toBe(true);
    expect(isErrorCode('manifest_unknown')).toBe(false);
    expect(LongshoreError.fromJSON({ name: 'LongshoreError', code: 'NOT_A_CODE' as ErrorCode, message: 'm', retryable: false }).code).toBe(
      ErrorCode.Internal,
    );
    expect(LongshoreError.fromJSON({ name: 'LongshoreError', code: ErrorCode.Denied, message: 'm', retryable: false }).code).toBe(
      ErrorCode.Denied,
    );
  });
});

describe('registry errors keep distribution-spec codes from the list', () => {
  const ctx = { what: 'manifest ghcr.io/o/r:v1', registry: 'ghcr.io', repository: 'o/r' };
  const respond = (status: number, body: unknown) => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });

  it.each([
    [400, { errors: [{ code: 'manifest_invalid', message: 'bad' }] }, ErrorCode.ManifestInvalid],
    [400, { errors: [{ code: 'TAG_INVALID' }] }, ErrorCode.TagInvalid],
    [404, { errors: [{ code: 'NAME_UNKNOWN' }] }, ErrorCode.NameUnknown],
    [400, { errors: [{ code: 'SOMETHING_ELSE' }] }, ErrorCode.Registry],
    [403, { errors: [{ code: 'PROXY_DENIED' }] }, ErrorCode.ProxyDenied],
    [404, 'not json', ErrorCode.ManifestUnknown],
    [401, '', ErrorCode.Unauthorized],
    [429, { errors: [{ code: 42 }] }, ErrorCode.TooManyRequests],
    [502, '', ErrorCode.Http],
  ])('%i %j → %s', async (status, body, code) => {
    const err = await registryError(respond(status, body), ctx);
    expect(err.code).toBe(code);
    expect(err.hint).toBeTruthy();
  });

  it("the proxy's refusals keep their own hint", async () => {
    expect((await registryError(respond(403, { errors: [{ code: 'PROXY_DENIED' }] }), ctx)).hint).toMatch(/LONGSHORE_REGISTRIES=/);
    expect((await registryError(respond(502, { errors: [{ code: 'PROXY_UNREACHABLE' }] }), ctx)).hint).toMatch(/Check the host name/);
  });
});

describe('truncation is told by data, not by words', () => {
  const layer = tarBytes([
    { header: { path: 'a', type: TarEntryType.File, size: 5000, mode: 0o644, uid: 0, gid: 0, mtime: 0 }, content: new Uint8Array(5000) },
  ]);
  const stream = (bytes: Uint8Array) => new Blob([bytes as BlobPart]).stream();

  it('a gzip layer cut short lists as truncated', async () => {
    const gz = gzipSync(layer);
    const listing = await listLayer(stream(gz.subarray(0, gz.length - 30)));
    expect(listing.status).toBe('failed');
    expect(isTruncation(listing.error)).toBe(true);
    expect(listing.issues.at(-1)).toMatchObject({ code: 'truncated' });
  });

  it('an error that only says "truncated" is a read error', async () => {
    const tricky = tarBytes([
      {
        header: { path: 'x', type: TarEntryType.File, size: 0, mode: 0o644, uid: 0, gid: 0, mtime: 0, pax: { 'SCHILY.xattr.user.x': 'y' } },
      },
    ]);
    // A PAX size record that is not a number: the message quotes it, and it says "truncated".
    const text = new TextDecoder('latin1').decode(tricky).replace('SCHILY.xattr.user.x=y', 'size=truncated!!!!!!!');
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    const listing = await listLayer(stream(bytes));
    expect(listing.status).toBe('failed');
    expect(listing.error?.message).toMatch(/truncated/);
    expect(isTruncation(listing.error)).toBe(false);
    expect(listing.issues.at(-1)).toMatchObject({ code: 'read-error' });
  });
});
