// Platform rules as containerd's platforms package states them in its own tests: TestOnly
// (compare_test.go) for what a machine runs, platformVector's order for which child wins, and
// normalizeArch (database.go) for names. Cases with containerd's `windows(10.0.17763)` syntax are
// left out: longshore reads os.version from the index, not from typed text.
import { describe, expect, it } from 'vitest';
import type { Descriptor } from '../../src/core/image/model.ts';
import {
  compatiblePlatforms,
  configPlatformLabel,
  formatPlatform,
  matchPlatform,
  normalizePlatform,
  parsePlatform,
  platformRank,
} from '../../src/core/image/platform.ts';

/** containerd's TestOnly table: platform → [children it runs, children it does not]. */
const ONLY: [string, string[], string[]][] = [
  ['linux/amd64', ['linux/amd64', 'linux/386'], ['linux/amd64/v2', 'linux/arm/v7', 'linux/arm64', 'windows/amd64', 'windows/arm']],
  [
    'linux/amd64/v2',
    ['linux/amd64', 'linux/amd64/v1', 'linux/amd64/v2', 'linux/386'],
    ['linux/amd64/v3', 'linux/amd64/v4', 'linux/arm/v7', 'linux/arm64', 'windows/amd64', 'windows/arm'],
  ],
  ['linux/386', ['linux/386'], ['linux/amd64', 'linux/arm/v7', 'linux/arm64', 'windows/amd64', 'windows/arm']],
  ['windows/amd64', ['windows/amd64'], ['linux/amd64', 'linux/arm/v7', 'linux/arm64', 'windows/arm']],
  [
    'linux/arm/v8',
    ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8'],
    ['linux/amd64', 'linux/arm/v4', 'linux/arm64', 'windows/amd64', 'windows/arm'],
  ],
  [
    'linux/arm/v7',
    ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7'],
    ['linux/amd64', 'linux/arm/v4', 'linux/arm/v8', 'linux/arm64', 'windows/amd64', 'windows/arm'],
  ],
  [
    'linux/arm/v6',
    ['linux/arm/v5', 'linux/arm/v6'],
    ['linux/amd64', 'linux/arm', 'linux/arm/v4', 'linux/arm/v7', 'linux/arm/v8', 'linux/arm64', 'windows/amd64', 'windows/arm'],
  ],
  [
    'linux/arm/v5',
    ['linux/arm/v5'],
    [
      'linux/amd64',
      'linux/arm',
      'linux/arm/v4',
      'linux/arm/v6',
      'linux/arm/v7',
      'linux/arm/v8',
      'linux/arm64',
      'windows/amd64',
      'windows/arm',
    ],
  ],
  [
    'linux/arm/v4',
    ['linux/arm/v4'],
    [
      'linux/amd64',
      'linux/arm',
      'linux/arm/v5',
      'linux/arm/v6',
      'linux/arm/v7',
      'linux/arm/v8',
      'linux/arm64',
      'windows/amd64',
      'windows/arm',
    ],
  ],
  [
    'linux/arm64/v9',
    [
      'linux/arm',
      'linux/arm/v5',
      'linux/arm/v6',
      'linux/arm/v7',
      'linux/arm/v8',
      'linux/arm64',
      'linux/arm64/v8',
      'linux/arm64/v8.1',
      'linux/arm64/v8.2',
      'linux/arm64/v8.3',
      'linux/arm64/v8.4',
      'linux/arm64/v8.5',
      'linux/arm64/v9',
      'linux/arm64/v9.0',
    ],
    ['linux/amd64', 'linux/arm/v4', 'windows/amd64', 'windows/arm', 'linux/arm64/v8.6'],
  ],
  [
    'linux/arm64/v8.1',
    ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8', 'linux/arm64', 'linux/arm64/v8', 'linux/arm64/v8.1'],
    ['linux/amd64', 'linux/arm/v4', 'linux/arm/v9', 'linux/arm64/v9', 'windows/amd64', 'windows/arm'],
  ],
  [
    'linux/arm64',
    ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8', 'linux/arm64', 'linux/arm64/v8'],
    ['linux/amd64', 'linux/arm/v4', 'linux/arm/v9', 'linux/arm64/v9', 'windows/amd64', 'windows/arm'],
  ],
];

describe('what a platform runs (containerd TestOnly)', () => {
  describe.each(ONLY)('%s', (want, runs, doesNotRun) => {
    it.each(runs)('runs %s', (have) => {
      expect(platformRank(parsePlatform(want), parsePlatform(have))).toBeTypeOf('number');
    });
    it.each(doesNotRun)('does not run %s', (have) => {
      expect(platformRank(parsePlatform(want), parsePlatform(have))).toBeUndefined();
    });
  });
});

describe('the order children are preferred in (containerd platformVector)', () => {
  it.each([
    ['linux/amd64', ['linux/amd64', 'linux/386']],
    ['linux/amd64/v3', ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']],
    ['linux/arm/v7', ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    ['linux/arm64', ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    [
      'linux/arm64/v8.2',
      ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'],
    ],
    [
      'linux/arm64/v9.1',
      [
        'linux/arm64/v9.1',
        'linux/arm64/v9',
        'linux/arm64/v8.6',
        'linux/arm64/v8.5',
        'linux/arm64/v8.4',
        'linux/arm64/v8.3',
        'linux/arm64/v8.2',
        'linux/arm64/v8.1',
        'linux/arm64',
        'linux/arm/v8',
        'linux/arm/v7',
        'linux/arm/v6',
        'linux/arm/v5',
      ],
    ],
    ['linux/arm/v4', ['linux/arm/v4']],
  ])('%s', (want, order) => {
    expect(compatiblePlatforms(parsePlatform(want)).map(formatPlatform)).toEqual(order);
  });

  const child = (platform: string): Descriptor => {
    const [os, architecture, variant] = platform.split('/') as [string, string, string | undefined];
    return {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${platform.replace(/[^a-z0-9]/g, '').padEnd(64, '0')}`,
      size: 1,
      platform: { os, architecture, ...(variant ? { variant } : {}) },
    };
  };
  const pick = (want: string, children: string[]) => {
    const all = children.map(child);
    return children[all.indexOf(matchPlatform(all, parsePlatform(want)))];
  };

  it('linux/arm64 without an arm64 child falls back to arm/v7, then v6, then v5', () => {
    expect(pick('linux/arm64', ['linux/amd64', 'linux/arm/v5', 'linux/arm/v7', 'linux/arm/v6'])).toBe('linux/arm/v7');
    expect(pick('linux/arm64', ['linux/amd64', 'linux/arm/v5', 'linux/arm/v6'])).toBe('linux/arm/v6');
    expect(pick('linux/arm64', ['linux/amd64', 'linux/arm/v5'])).toBe('linux/arm/v5');
    expect(pick('linux/arm64', ['linux/arm/v7', 'linux/arm64/v8'])).toBe('linux/arm64/v8');
  });

  it('a plain amd64 or arm64 request never takes a child that needs a newer CPU', () => {
    expect(pick('linux/amd64', ['linux/amd64/v3', 'linux/amd64'])).toBe('linux/amd64');
    expect(pick('linux/arm64', ['linux/arm64/v9', 'linux/arm/v7'])).toBe('linux/arm/v7');
    expect(() => pick('linux/amd64', ['linux/amd64/v3', 'linux/arm64'])).toThrow(/No image for linux\/amd64 .*linux\/amd64\/v3/);
    expect(() => pick('linux/arm64', ['linux/arm64/v9'])).toThrow(expect.objectContaining({ code: 'NO_MATCHING_PLATFORM' }));
  });

  it('a newer variant asked for takes the best older one', () => {
    expect(pick('linux/amd64/v3', ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v4'])).toBe('linux/amd64/v2');
    expect(pick('linux/arm64/v8.2', ['linux/arm64/v8.3', 'linux/arm64', 'linux/arm64/v8.1'])).toBe('linux/arm64/v8.1');
    expect(pick('linux/arm64/v9', ['linux/arm64', 'linux/arm64/v8.5'])).toBe('linux/arm64/v8.5');
    expect(pick('linux/arm/v4', ['linux/arm/v4', 'linux/arm/v5'])).toBe('linux/arm/v4');
  });
});

describe('names (containerd normalizeArch)', () => {
  it.each([
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm64/8', 'linux/arm64'],
    ['linux/arm64/v8.0', 'linux/arm64'],
    ['linux/arm64/v8.2', 'linux/arm64/v8.2'],
    ['linux/arm64/9', 'linux/arm64/v9'],
    ['linux/arm64/v9.0', 'linux/arm64/v9'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/6', 'linux/arm/v6'],
    ['linux/arm/v4', 'linux/arm/v4'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/i386', 'linux/386'],
    ['Linux/AMD64', 'linux/amd64'],
    ['macos/arm64', 'darwin/arm64'],
  ])('%s is %s', (text, canonical) => {
    expect(formatPlatform(parsePlatform(text))).toBe(canonical);
    expect(formatPlatform(normalizePlatform(parsePlatform(canonical)))).toBe(canonical);
  });
});

describe('the platform label', () => {
  it('is os/architecture[/variant] from a config, and nothing when the config names none', () => {
    expect(configPlatformLabel({ os: 'linux', architecture: 'arm', variant: 'v7' })).toBe('linux/arm/v7');
    expect(configPlatformLabel({ os: 'linux', architecture: 'amd64' })).toBe('linux/amd64');
    expect(configPlatformLabel({ os: 'linux', architecture: 'amd64', variant: '' })).toBe('linux/amd64');
    expect(configPlatformLabel({ architecture: 'amd64' })).toBeUndefined();
    expect(configPlatformLabel({})).toBeUndefined();
  });
});
