// Listing a repository's tags against the real registry: 2,500 tags pushed through the API.
// distribution 2.8 sends every tag in one unsorted answer; the tamper proxy in front pages them
// as distribution v3, Docker Hub and ghcr.io do (sorted, `n`, `last`, `Link`). Capped pages are
// refused, HEAD gives digests.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { headManifest, listTags, nextLink } from '../../src/core/registry/tags.ts';
import { pushManyTags, type PushedImage } from '../helpers/registry-api.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { rejection } from '../helpers/assert.ts';

const env = inject('registryEnv');
const repo = `test/tags-${randomUUID().slice(0, 8)}`;
let front: TamperProxy;
let tags: string[];
let image: PushedImage;

beforeAll(async () => {
  front = await startTamperProxy(env.anon.url, { paginateTags: {} });
  ({ tags, image } = await pushManyTags(env.anon.url, repo, 2500));
}, 300_000);

afterAll(async () => {
  await front?.close();
});

const client = () =>
  new RegistryClient({ transport: { fetch: (u, i) => globalThis.fetch(u, i) }, retry: { sleep: async () => undefined } });

describe('tags', () => {
  it('lists 2,500 tags in pages of n, following Link to the end', async () => {
    const seen = front.requests.length;
    const pages: number[] = [];
    const list = await listTags(client(), parseReference(`${front.host}/${repo}`), { pageSize: 1000, onPage: (p) => pages.push(p.length) });
    expect(list.tags).toEqual(tags);
    expect(list.truncated).toBe(false);
    // Straight from distribution 2.8: one page, every tag, in its own order.
    const direct = await listTags(client(), parseReference(`${env.anon.host}/${repo}`));
    expect([direct.pages, direct.tags.slice().sort()]).toEqual([1, tags]);
    expect(pages).toEqual([1000, 1000, 501]);
    const paths = front.requests
      .slice(seen)
      .map((r) => r.path)
      .filter((p) => p.includes('/tags/list'));
    expect(paths[0]).toBe(`/v2/${repo}/tags/list?n=1000`);
    expect(paths[1]).toMatch(new RegExp(`last=${tags[999]}`));
    expect(paths).toHaveLength(3);
  });

  it('follows a registry that sends fewer than n; stops at maxTags and says so; refuses a page over the byte cap', async () => {
    front.rules.paginateTags = { maxPage: 100 };
    try {
      const small = await listTags(client(), parseReference(`${front.host}/${repo}`), { pageSize: 1000 });
      expect([small.pages, small.tags]).toEqual([26, tags]);
      const cut = await listTags(client(), parseReference(`${front.host}/${repo}`), { pageSize: 100, maxTags: 250 });
      expect(cut).toMatchObject({ truncated: true, pages: 3 });
      expect(cut.tags).toEqual(tags.slice(0, 250));
    } finally {
      front.rules.paginateTags = {};
    }
    const error = await rejection(listTags(client(), parseReference(`${env.anon.host}/${repo}`), { pageSize: 1000, maxPageBytes: 4096 }));
    expect(error.code).toBe('TOO_LARGE');
  });

  it("a missing repository is the registry's NAME_UNKNOWN with a hint", async () => {
    const error = await rejection(listTags(client(), parseReference(`${env.anon.host}/test/no-such-${randomUUID().slice(0, 8)}`)));
    expect(error.code).toBe('NAME_UNKNOWN');
    expect(error.hint).toBeTruthy();
  });

  it("HEAD gives a tag's digest (no body fetched)", async () => {
    const seen = front.requests.length;
    const head = await headManifest(client(), parseReference(`${front.host}/${repo}:${tags[1234]}`));
    expect(head).toEqual({ digest: image.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: expect.any(Number) });
    expect(front.requests.slice(seen).map((r) => r.method)).toEqual(['HEAD']);
  });

  it('reads Link headers as RFC 8288 writes them', () => {
    const base = 'http://r.example/v2/a/tags/list?n=2';
    expect(nextLink('</v2/a/tags/list?n=2&last=b>; rel="next"', base)?.toString()).toBe('http://r.example/v2/a/tags/list?n=2&last=b');
    expect(nextLink('<http://r.example/x>; rel="prev", </y?last=c>; rel=next', base)?.pathname).toBe('/y');
    expect(nextLink('</z>; rel="nextpage"', base)).toBeUndefined();
    expect(nextLink(null, base)).toBeUndefined();
  });
});
