// The page's state in its URL: read back only what the page can take, written in one order.
import { describe, expect, it } from 'vitest';
import { linkQuery, readLink } from '../../src/ui/state/url-state.ts';

const formats = ['docker', 'legacy', 'oci', 'tarball'];

describe('deep links', () => {
  it('round-trips a pull, several names included', () => {
    const state = {
      image: 'alpine:3.20 ghcr.io/o/r@sha256:' + 'a'.repeat(64),
      platform: 'linux/arm/v7',
      format: 'oci',
      allPlatforms: true,
    };
    const query = linkQuery(state);
    expect(query).toMatch(/^\?image=alpine%3A3\.20\+ghcr\.io/);
    expect(readLink(query, formats)).toEqual(state);
  });

  it('keeps only values the page can take', () => {
    expect(readLink('?image=alpine&platform=linux/amd64&format=zip', formats)).toEqual({ image: 'alpine', platform: 'linux/amd64' });
    expect(readLink('?image=alpine&platform=<script>', formats)).toEqual({ image: 'alpine' });
    expect(readLink('?format=oci', formats)).toBeUndefined();
    expect(readLink(`?image=${'a'.repeat(5000)}`, formats)).toBeUndefined();
    expect(linkQuery({ image: '  ' })).toBe('');
  });
});
