import { describe, it, expect } from 'vitest';
import { ErrorCode, InvalidReferenceError, LongshoreError } from '../../src/core/errors.ts';
import {
  downloadFileName,
  isLoopbackHost,
  parseReference,
  tryParseReference,
  withDigest,
  type ImageReference,
  type ReferencePart,
} from '../../src/core/reference.ts';

const HEX = 'abcdef0123456789'.repeat(4);
const D = `sha256:${HEX}`;
const HEX2 = '0123456789abcdef'.repeat(4);
const D2 = `sha256:${HEX2}`;
const HUB = 'docker.io';
const HUB_API = 'registry-1.docker.io';

type Expected = Omit<ImageReference, 'identifier' | 'name'>;

// input → expected fields; identifier and name are derived and checked for every row.
const valid: Array<[string, Expected]> = [
  [
    'alpine',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    '  alpine\t\n',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    'alpine:3.20',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: '3.20',
      digest: undefined,
      canonical: 'docker.io/library/alpine:3.20',
      familiar: 'alpine:3.20',
    },
  ],
  [
    'user/app',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'user/app',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/user/app:latest',
      familiar: 'user/app:latest',
    },
  ],
  [
    'user/app:v1',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'user/app',
      tag: 'v1',
      digest: undefined,
      canonical: 'docker.io/user/app:v1',
      familiar: 'user/app:v1',
    },
  ],
  [
    'docker.io/alpine',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    'docker.io/library/alpine',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    'index.docker.io/library/alpine',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    'index.docker.io/alpine:edge',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'edge',
      digest: undefined,
      canonical: 'docker.io/library/alpine:edge',
      familiar: 'alpine:edge',
    },
  ],
  [
    'Docker.IO/user/app',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'user/app',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/user/app:latest',
      familiar: 'user/app:latest',
    },
  ],
  [
    'library/alpine',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/alpine:latest',
      familiar: 'alpine:latest',
    },
  ],
  [
    'library/a/b',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/a/b',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/a/b:latest',
      familiar: 'library/a/b:latest',
    },
  ],
  // A docker.io repository whose first component looks like a host keeps "docker.io/" in its familiar form.
  [
    'docker.io/foo.bar/x',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'foo.bar/x',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/foo.bar/x:latest',
      familiar: 'docker.io/foo.bar/x:latest',
    },
  ],
  [
    'docker.io/localhost/x',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'localhost/x',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/localhost/x:latest',
      familiar: 'docker.io/localhost/x:latest',
    },
  ],
  // registry-1.docker.io is taken literally (as docker does): no library/ prefix, no renaming.
  [
    'registry-1.docker.io/library/alpine',
    {
      registry: HUB_API,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
      canonical: 'registry-1.docker.io/library/alpine:latest',
      familiar: 'registry-1.docker.io/library/alpine:latest',
    },
  ],
  [
    'ghcr.io/o/r:tag',
    {
      registry: 'ghcr.io',
      apiHost: 'ghcr.io',
      repository: 'o/r',
      tag: 'tag',
      digest: undefined,
      canonical: 'ghcr.io/o/r:tag',
      familiar: 'ghcr.io/o/r:tag',
    },
  ],
  [
    'GHCR.io/o/r',
    {
      registry: 'ghcr.io',
      apiHost: 'ghcr.io',
      repository: 'o/r',
      tag: 'latest',
      digest: undefined,
      canonical: 'ghcr.io/o/r:latest',
      familiar: 'ghcr.io/o/r:latest',
    },
  ],
  [
    'ghcr.io/single',
    {
      registry: 'ghcr.io',
      apiHost: 'ghcr.io',
      repository: 'single',
      tag: 'latest',
      digest: undefined,
      canonical: 'ghcr.io/single:latest',
      familiar: 'ghcr.io/single:latest',
    },
  ],
  [
    'localhost:5000/x',
    {
      registry: 'localhost:5000',
      apiHost: 'localhost:5000',
      repository: 'x',
      tag: 'latest',
      digest: undefined,
      canonical: 'localhost:5000/x:latest',
      familiar: 'localhost:5000/x:latest',
    },
  ],
  [
    'LOCALHOST:5000/x',
    {
      registry: 'localhost:5000',
      apiHost: 'localhost:5000',
      repository: 'x',
      tag: 'latest',
      digest: undefined,
      canonical: 'localhost:5000/x:latest',
      familiar: 'localhost:5000/x:latest',
    },
  ],
  [
    'localhost/x',
    {
      registry: 'localhost',
      apiHost: 'localhost',
      repository: 'x',
      tag: 'latest',
      digest: undefined,
      canonical: 'localhost/x:latest',
      familiar: 'localhost/x:latest',
    },
  ],
  [
    'Localhost/foo:1',
    {
      registry: 'localhost',
      apiHost: 'localhost',
      repository: 'foo',
      tag: '1',
      digest: undefined,
      canonical: 'localhost/foo:1',
      familiar: 'localhost/foo:1',
    },
  ],
  [
    `host:5000/a/b/c:tag@${D}`,
    {
      registry: 'host:5000',
      apiHost: 'host:5000',
      repository: 'a/b/c',
      tag: 'tag',
      digest: D,
      canonical: `host:5000/a/b/c:tag@${D}`,
      familiar: `host:5000/a/b/c:tag@${D}`,
    },
  ],
  [
    `alpine@${D}`,
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: undefined,
      digest: D,
      canonical: `docker.io/library/alpine@${D}`,
      familiar: `alpine@${D}`,
    },
  ],
  [
    `alpine:3@${D}`,
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: '3',
      digest: D,
      canonical: `docker.io/library/alpine:3@${D}`,
      familiar: `alpine:3@${D}`,
    },
  ],
  [
    `ghcr.io/o/r@${D}`,
    {
      registry: 'ghcr.io',
      apiHost: 'ghcr.io',
      repository: 'o/r',
      tag: undefined,
      digest: D,
      canonical: `ghcr.io/o/r@${D}`,
      familiar: `ghcr.io/o/r@${D}`,
    },
  ],
  [
    '[::1]:5000/x',
    {
      registry: '[::1]:5000',
      apiHost: '[::1]:5000',
      repository: 'x',
      tag: 'latest',
      digest: undefined,
      canonical: '[::1]:5000/x:latest',
      familiar: '[::1]:5000/x:latest',
    },
  ],
  [
    '[2001:DB8::1]/ns/x:v',
    {
      registry: '[2001:db8::1]',
      apiHost: '[2001:db8::1]',
      repository: 'ns/x',
      tag: 'v',
      digest: undefined,
      canonical: '[2001:db8::1]/ns/x:v',
      familiar: '[2001:db8::1]/ns/x:v',
    },
  ],
  [
    '127.0.0.1:5000/x',
    {
      registry: '127.0.0.1:5000',
      apiHost: '127.0.0.1:5000',
      repository: 'x',
      tag: 'latest',
      digest: undefined,
      canonical: '127.0.0.1:5000/x:latest',
      familiar: '127.0.0.1:5000/x:latest',
    },
  ],
  [
    'a.b.c.example.com:443/team/app',
    {
      registry: 'a.b.c.example.com:443',
      apiHost: 'a.b.c.example.com:443',
      repository: 'team/app',
      tag: 'latest',
      digest: undefined,
      canonical: 'a.b.c.example.com:443/team/app:latest',
      familiar: 'a.b.c.example.com:443/team/app:latest',
    },
  ],
  [
    'my-registry.local:8080/ns/img:1.0',
    {
      registry: 'my-registry.local:8080',
      apiHost: 'my-registry.local:8080',
      repository: 'ns/img',
      tag: '1.0',
      digest: undefined,
      canonical: 'my-registry.local:8080/ns/img:1.0',
      familiar: 'my-registry.local:8080/ns/img:1.0',
    },
  ],
  [
    'a__b/c',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'a__b/c',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/a__b/c:latest',
      familiar: 'a__b/c:latest',
    },
  ],
  [
    'a--b---c/d',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'a--b---c/d',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/a--b---c/d:latest',
      familiar: 'a--b---c/d:latest',
    },
  ],
  [
    'a_b.c-d',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/a_b.c-d',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/a_b.c-d:latest',
      familiar: 'a_b.c-d:latest',
    },
  ],
  [
    '0',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/0',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/0:latest',
      familiar: '0:latest',
    },
  ],
  [
    'alpine:V1.0-RC_1',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 'V1.0-RC_1',
      digest: undefined,
      canonical: 'docker.io/library/alpine:V1.0-RC_1',
      familiar: 'alpine:V1.0-RC_1',
    },
  ],
  [
    'alpine:_x',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: '_x',
      digest: undefined,
      canonical: 'docker.io/library/alpine:_x',
      familiar: 'alpine:_x',
    },
  ],
  [
    `alpine:${'t'.repeat(128)}`,
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/alpine',
      tag: 't'.repeat(128),
      digest: undefined,
      canonical: `docker.io/library/alpine:${'t'.repeat(128)}`,
      familiar: `alpine:${'t'.repeat(128)}`,
    },
  ],
  // Grammar-compliant oddities, same as docker: a bare host with no "/" is a Docker Hub repository.
  [
    'localhost:5000',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/localhost',
      tag: '5000',
      digest: undefined,
      canonical: 'docker.io/library/localhost:5000',
      familiar: 'localhost:5000',
    },
  ],
  [
    'ghcr.io',
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: 'library/ghcr.io',
      tag: 'latest',
      digest: undefined,
      canonical: 'docker.io/library/ghcr.io:latest',
      familiar: 'ghcr.io:latest',
    },
  ],
  // 255-character name limit, counted on the normalised "registry/repository".
  [
    'a'.repeat(237),
    {
      registry: HUB,
      apiHost: HUB_API,
      repository: `library/${'a'.repeat(237)}`,
      tag: 'latest',
      digest: undefined,
      canonical: `docker.io/library/${'a'.repeat(237)}:latest`,
      familiar: `${'a'.repeat(237)}:latest`,
    },
  ],
  [
    `ghcr.io/${'b'.repeat(247)}`,
    {
      registry: 'ghcr.io',
      apiHost: 'ghcr.io',
      repository: 'b'.repeat(247),
      tag: 'latest',
      digest: undefined,
      canonical: `ghcr.io/${'b'.repeat(247)}:latest`,
      familiar: `ghcr.io/${'b'.repeat(247)}:latest`,
    },
  ],
];

// input → part named in data.part, and a message regex that names the bad part.
const invalidCases: Array<[string, ReferencePart, RegExp]> = [
  ['', 'input', /empty/],
  ['   ', 'input', /empty/],
  ['foo bar', 'input', /"foo bar" contains whitespace/],
  ['a\tb', 'input', /whitespace/],
  ['https://ghcr.io/x', 'input', /scheme "https:\/\/"/],
  ['docker://alpine', 'input', /scheme "docker:\/\/"/],
  ['alpine:', 'tag', /tag after ":" is empty/],
  ['alpine@', 'digest', /digest after "@" is empty/],
  ['a@b@c', 'digest', /more than one "@"/],
  ['Alpine', 'repository', /"Alpine".*must be lowercase/],
  ['ghcr.io/Owner/repo:v1', 'repository', /"Owner\/repo".*lowercase/],
  ['FOO/bar', 'repository', /"FOO\/bar".*lowercase/],
  ['LOCALHOSTX/bar', 'repository', /lowercase/],
  ['a//b', 'repository', /"a\/\/b" has an empty path component/],
  ['/alpine', 'repository', /"\/alpine" has an empty path component/],
  ['alpine/', 'repository', /"alpine\/" has an empty path component/],
  ['ghcr.io/', 'repository', /"ghcr.io\/" has no repository/],
  ['ghcr.io/:tag', 'repository', /no repository/],
  [':tag', 'repository', /":tag" has no repository/],
  [`@${D}`, 'repository', /no repository/],
  ['a___b', 'repository', /separator "___"/],
  ['a__-b', 'repository', /separator "__-"/],
  ['a..b', 'repository', /separator "\.\."/],
  ['a._b', 'repository', /separator "\._"/],
  ['a.-b', 'repository', /separator "\.-"/],
  ['-a', 'repository', /"-a".*start and end/],
  ['a-', 'repository', /"a-".*start and end/],
  ['.a', 'repository', /"\.a".*start and end/],
  ['_a/b', 'repository', /"_a".*start and end/],
  ['ns/a_', 'repository', /"a_".*start and end/],
  ['a+b', 'repository', /"\+" is not allowed/],
  ['caf\u00e9', 'repository', /"\u00e9" is not allowed/],
  ['alpine:latest:foo', 'repository', /":" is not allowed/],
  [`alpine:${'t'.repeat(129)}`, 'tag', /129 characters long; the limit is 128/],
  ['alpine:.x', 'tag', /Tag "\.x" must start with/],
  ['alpine:-x', 'tag', /Tag "-x" must start with/],
  ['alpine:a+b', 'tag', /Tag "a\+b" contains "\+"/],
  [`alpine@sha512:${HEX}${HEX}`, 'digest', /"sha512" is not supported; only sha256/],
  ['alpine@md5:abc', 'digest', /"md5" is not supported/],
  [`alpine@SHA256:${HEX}`, 'digest', /"SHA256" is not supported/],
  ['alpine@abc', 'digest', /"abc" has no algorithm/],
  ['alpine@:abc', 'digest', /no algorithm/],
  ['alpine@sha256:abc', 'digest', /has 3 hex characters; sha256 needs exactly 64/],
  [`alpine@sha256:${HEX}0`, 'digest', /has 65 hex characters/],
  [`alpine@sha256:${HEX.toUpperCase()}`, 'digest', /uppercase hex/],
  [`alpine@sha256:${'g'.repeat(64)}`, 'digest', /contains "g"/],
  [`alpine@${D}:v1`, 'digest', /contains ":"/],
  ['localhost:99999/x', 'registry', /invalid port "99999"/],
  ['localhost:0/x', 'registry', /invalid port "0"/],
  ['host:abc/x', 'registry', /invalid port "abc"/],
  ['a:b:c/x', 'registry', /invalid port "b:c"/],
  ['exa_mple.com/x', 'registry', /"exa_mple.com" is not a valid host/],
  ['-bad.com/x', 'registry', /"-bad.com" is not a valid host/],
  ['bad-.com/x', 'registry', /not a valid host/],
  ['a..com/x', 'registry', /"a..com" is not a valid host/],
  ['[::1/x', 'registry', /"\[::1" is not a valid bracketed IPv6/],
  ['[zz::1]/x', 'registry', /"\[zz::1\]" is not a valid bracketed IPv6/],
  ['[::1]x/y', 'registry', /bracketed IPv6/],
  ['[::1]', 'repository', /"\[::1\]" is a registry address without a repository/],
  ['[::1]:5000', 'repository', /"\[::1\]:5000" is a registry address without a repository/],
  ['a'.repeat(238), 'name', /256 characters long; the limit is 255/],
  [`ghcr.io/${'b'.repeat(248)}`, 'name', /256 characters long; the limit is 255/],
];

// distribution/reference's own tables (reference_test.go TestReferenceParse, normalize_test.go
// TestValidateReferenceName, TestValidateRemoteName, TestParseRepositoryInfo, TestParseAnyReference),
// the cases above do not already cover, as ParseNormalizedNamed reads them:
// input → [registry, repository, tag, digest, familiar].
const FFF = `sha256:${'f'.repeat(64)}`;
const distributionValid: Array<[string, [string, string, string | undefined, string | undefined, string]]> = [
  ['test_com', [HUB, 'library/test_com', 'latest', undefined, 'test_com:latest']],
  ['test.com:tag', [HUB, 'library/test.com', 'tag', undefined, 'test.com:tag']],
  ['test.com:5000', [HUB, 'library/test.com', '5000', undefined, 'test.com:5000']],
  ['test.com/repo:tag', ['test.com', 'repo', 'tag', undefined, 'test.com/repo:tag']],
  ['test:5000/repo', ['test:5000', 'repo', 'latest', undefined, 'test:5000/repo:latest']],
  [`test:5000/repo@${FFF}`, ['test:5000', 'repo', undefined, FFF, `test:5000/repo@${FFF}`]],
  [`test:5000/repo:tag@${FFF}`, ['test:5000', 'repo', 'tag', FFF, `test:5000/repo:tag@${FFF}`]],
  ['lowercase:Uppercase', [HUB, 'library/lowercase', 'Uppercase', undefined, 'lowercase:Uppercase']],
  [
    'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
    ['sub-dom1.foo.com', 'bar/baz/quux', 'some-long-tag', undefined, 'sub-dom1.foo.com/bar/baz/quux:some-long-tag'],
  ],
  [
    'b.gcr.io/test.example.com/my-app:test.example.com',
    ['b.gcr.io', 'test.example.com/my-app', 'test.example.com', undefined, 'b.gcr.io/test.example.com/my-app:test.example.com'],
  ],
  ['xn--n3h.com/myimage:xn--n3h.com', ['xn--n3h.com', 'myimage', 'xn--n3h.com', undefined, 'xn--n3h.com/myimage:xn--n3h.com']],
  ['xn--n3h.com:18080/foo', ['xn--n3h.com:18080', 'foo', 'latest', undefined, 'xn--n3h.com:18080/foo:latest']],
  ['test-com:8080/foo', ['test-com:8080', 'foo', 'latest', undefined, 'test-com:8080/foo:latest']],
  ['foo_bar.com:8080', [HUB, 'library/foo_bar.com', '8080', undefined, 'foo_bar.com:8080']],
  ['foo/foo_bar.com:8080', [HUB, 'foo/foo_bar.com', '8080', undefined, 'foo/foo_bar.com:8080']],
  ['192.168.1.1', [HUB, 'library/192.168.1.1', 'latest', undefined, '192.168.1.1:latest']],
  ['192.168.1.1:5000', [HUB, 'library/192.168.1.1', '5000', undefined, '192.168.1.1:5000']],
  ['192.168.1.1/repo', ['192.168.1.1', 'repo', 'latest', undefined, '192.168.1.1/repo:latest']],
  ['192.168.1.1:5000/repo:5050', ['192.168.1.1:5000', 'repo', '5050', undefined, '192.168.1.1:5000/repo:5050']],
  ['192.168.0.1:8/debian', ['192.168.0.1:8', 'debian', 'latest', undefined, '192.168.0.1:8/debian:latest']],
  ['[2001:db8::1]/repo', ['[2001:db8::1]', 'repo', 'latest', undefined, '[2001:db8::1]/repo:latest']],
  ['[2001:db8:1:2:3:4:5:6]/repo:tag', ['[2001:db8:1:2:3:4:5:6]', 'repo', 'tag', undefined, '[2001:db8:1:2:3:4:5:6]/repo:tag']],
  [`[2001:db8::1]:5000/repo:tag@${FFF}`, ['[2001:db8::1]:5000', 'repo', 'tag', FFF, `[2001:db8::1]:5000/repo:tag@${FFF}`]],
  ['[2001:db8::]:5000/repo', ['[2001:db8::]:5000', 'repo', 'latest', undefined, '[2001:db8::]:5000/repo:latest']],
  ['[fc00::1]:5000/docker/docker', ['[fc00::1]:5000', 'docker/docker', 'latest', undefined, '[fc00::1]:5000/docker/docker:latest']],
  [
    '127.0.0.1:8000/private/moonbase',
    ['127.0.0.1:8000', 'private/moonbase', 'latest', undefined, '127.0.0.1:8000/private/moonbase:latest'],
  ],
  ['example.com:8000/privatebasee', ['example.com:8000', 'privatebasee', 'latest', undefined, 'example.com:8000/privatebasee:latest']],
  ['library/ubuntu-12.04-base', [HUB, 'library/ubuntu-12.04-base', 'latest', undefined, 'ubuntu-12.04-base:latest']],
  ['store/foo/bar', [HUB, 'store/foo/bar', 'latest', undefined, 'store/foo/bar:latest']],
  ['other/library', [HUB, 'other/library', 'latest', undefined, 'other/library:latest']],
  [
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    [
      HUB,
      'library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
      'latest',
      undefined,
      'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest',
    ],
  ],
  // With a registry, 64 hex characters are a repository like any other.
  [`docker.io/${'1a3f5e7d'.repeat(8)}`, [HUB, `library/${'1a3f5e7d'.repeat(8)}`, 'latest', undefined, `${'1a3f5e7d'.repeat(8)}:latest`]],
  // 63 hex characters are not an image ID.
  [
    'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9',
    [
      HUB,
      'library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9',
      'latest',
      undefined,
      'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest',
    ],
  ],
  ['docker---rules/docker', [HUB, 'docker---rules/docker', 'latest', undefined, 'docker---rules/docker:latest']],
  ['d/docker', [HUB, 'd/docker', 'latest', undefined, 'd/docker:latest']],
  ['dock__er/docker', [HUB, 'dock__er/docker', 'latest', undefined, 'dock__er/docker:latest']],
];

const distributionInvalid: Array<[string, ReferencePart, RegExp]> = [
  ['1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a', 'input', /image ID/],
  [`@${FFF}`, 'repository', /no repository/],
  ['repo@sha256:ffffffffffffffffffffffffffffffffff', 'digest', /34 hex characters/],
  [`validname@invaliddigest:${'f'.repeat(64)}`, 'digest', /"invaliddigest" is not supported/],
  ['Uppercase:tag', 'repository', /lowercase/],
  ['test:5000/Uppercase/lowercase:tag', 'repository', /lowercase/],
  [`${'a/'.repeat(128)}a:tag`, 'name', /the limit is 255/],
  ['aa/asdf$$^/aa', 'repository', /"\$" is not allowed/],
  ['[2001:db8::1]:tag', 'repository', /registry address without a repository/],
  ['[fe80::1%eth0]:5000/repo', 'registry', /bracketed IPv6/],
  ['[fe80::1%@invalidzone]:5000/repo', 'repository', /registry address without a repository/],
  ['[2001:db8:3:4::192.0.2.33]:5000/debian', 'registry', /bracketed IPv6/],
  ['fc00::1:5000/debian', 'registry', /invalid port/],
  ['docker///docker', 'repository', /empty path component/],
  ['-docker.io/docker/docker', 'registry', /not a valid host/],
  ['docker.io/docker/Docker', 'repository', /lowercase/],
  ['docker-/docker', 'repository', /start and end/],
  ['-docker-/docker', 'repository', /start and end/],
  ['____/____', 'repository', /start and end/],
  // With a ".", the first component is a registry (splitDockerDomain), and not a valid host.
  ['dock_.er/docker', 'registry', /"dock_.er" is not a valid host/],
  ['dock-.er/docker', 'registry', /"dock-.er" is not a valid host/],
  ['docker/', 'repository', /empty path component/],
  [`${Array(4).fill('this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255').join('_')}/docker`, 'name', /the limit is 255/],
  // distribution takes an uppercase first component for a registry; we refuse it and say why.
  ['Docker/docker', 'repository', /"Docker" is not read as a registry: a registry needs a "\." or ":" in its name, or is "localhost"/],
  ['DOCKER/docker', 'repository', /not read as a registry/],
];

describe("parseReference: distribution's tables", () => {
  it.each(distributionValid)('%s', (input, [registry, repository, tag, digest, familiar]) => {
    const ref = parseReference(input);
    expect({ registry: ref.registry, repository: ref.repository, tag: ref.tag, digest: ref.digest, familiar: ref.familiar }).toEqual({
      registry,
      repository,
      tag,
      digest,
      familiar,
    });
    expect(parseReference(ref.familiar)).toEqual(ref);
  });

  it.each(distributionInvalid)('%j is rejected (%s)', (input, part, message) => {
    const err = expectInvalid(() => parseReference(input));
    expect(err.message).toMatch(message);
    expect(err.data).toMatchObject({ part });
  });

  it('a bare image ID is refused with a hint to use a name or a digest', () => {
    const id = 'dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c';
    for (const input of [id, id.toUpperCase(), `  ${id}  `]) {
      const err = expectInvalid(() => parseReference(input));
      expect(err.code).toBe(ErrorCode.InvalidReference);
      expect(err.message).toMatch(/is a 64-character hex string, which is an image ID/);
      expect(err.hint).toMatch(/name@sha256:/);
    }
  });

  it('an uppercase single-label host is explained: how to name it as a registry, or the lowercase name', () => {
    const err = expectInvalid(() => parseReference('MYHOST/app:v1'));
    expect(err.message).toMatch(/"MYHOST" is not read as a registry/);
    expect(err.hint).toContain('"myhost:443/app"');
    expect(err.hint).toContain('"myhost/app:v1"');
    // An uppercase component after a real registry, or a lowercase first one, is only about case.
    expect(expectInvalid(() => parseReference('ghcr.io/Owner/repo')).message).not.toMatch(/registry/);
    expect(expectInvalid(() => parseReference('owner/Repo')).message).not.toMatch(/registry/);
  });
});

function expectInvalid(fn: () => unknown): InvalidReferenceError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidReferenceError);
    return err as InvalidReferenceError;
  }
  throw new Error('expected an InvalidReferenceError');
}

describe('parseReference: valid references', () => {
  it.each(valid)('%s', (input, expected) => {
    const ref = parseReference(input);
    expect(ref).toEqual({
      ...expected,
      name: `${expected.registry}/${expected.repository}`,
      identifier: expected.digest ?? expected.tag,
    });
    expect(Object.isFrozen(ref)).toBe(true);
  });

  it.each(valid)('%s round-trips through canonical and familiar', (input) => {
    const ref = parseReference(input);
    expect(parseReference(ref.canonical)).toEqual(ref);
    expect(parseReference(ref.familiar)).toEqual(ref);
  });

  it('defaults the tag only when neither tag nor digest is given', () => {
    expect(parseReference('alpine').tag).toBe('latest');
    expect(parseReference(`alpine@${D}`).tag).toBeUndefined();
    expect(parseReference(`alpine@${D}`).identifier).toBe(D);
    expect(parseReference(`alpine:3@${D}`).identifier).toBe(D);
  });
});

describe('parseReference: invalid references', () => {
  it.each(invalidCases)('%j is rejected (%s)', (input, part, message) => {
    const err = expectInvalid(() => parseReference(input));
    expect(err.code).toBe(ErrorCode.InvalidReference);
    expect(err.code).toBe('INVALID_REFERENCE');
    expect(err.message).toMatch(message);
    expect(err.hint).toBeTruthy();
    expect(err.data).toMatchObject({ input, part });
  });

  it('tells the user to drop the scheme', () => {
    const err = expectInvalid(() => parseReference('https://ghcr.io/x'));
    expect(err.hint).toContain('"ghcr.io/x"');
  });

  it('suggests the lowercase reference', () => {
    expect(expectInvalid(() => parseReference('ghcr.io/Owner/Repo:V1')).hint).toContain('"ghcr.io/owner/repo:V1"');
    expect(expectInvalid(() => parseReference('Alpine')).hint).toContain('"alpine"');
  });

  it('hints that a tag goes before the digest', () => {
    expect(expectInvalid(() => parseReference(`alpine@${D}:v1`)).hint).toMatch(/before the "@"/);
  });

  it('keeps messages short for huge input, and stays fast', () => {
    const err = expectInvalid(() => parseReference(`${'a-'.repeat(50_000)}`));
    expect(err.message.length).toBeLessThan(400);
    expect(err.message).toMatch(/start and end/);
  });

  it('rejects non-string input at the edge', () => {
    const err = expectInvalid(() => parseReference(undefined as unknown as string));
    expect(err.message).toMatch(/must be a string/);
  });

  it('serialises across a worker boundary', () => {
    const json = expectInvalid(() => parseReference('Alpine')).toJSON();
    const back = LongshoreError.fromJSON(JSON.parse(JSON.stringify(json)));
    expect(back.code).toBe('INVALID_REFERENCE');
    expect(back.hint).toMatch(/lowercase/);
    expect(back.data).toMatchObject({ input: 'Alpine', part: 'repository', value: 'Alpine' });
  });
});

describe('tryParseReference', () => {
  it('returns the reference', () => {
    const result = tryParseReference('alpine');
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.ref.canonical).toBe('docker.io/library/alpine:latest');
  });

  it('returns the error instead of throwing', () => {
    const result = tryParseReference('a//b');
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error).toBeInstanceOf(InvalidReferenceError);
      expect(result.error.data).toMatchObject({ part: 'repository' });
    }
  });
});

describe('withDigest', () => {
  it('withDigest pins the digest and keeps the tag', () => {
    const ref = withDigest(parseReference('ghcr.io/o/r:v1'), D);
    expect(ref.tag).toBe('v1');
    expect(ref.digest).toBe(D);
    expect(ref.identifier).toBe(D);
    expect(ref.canonical).toBe(`ghcr.io/o/r:v1@${D}`);
    expect(ref.familiar).toBe(`ghcr.io/o/r:v1@${D}`);
    expect(parseReference(ref.canonical)).toEqual(ref);
  });

  it('withDigest replaces an existing digest and keeps a digest-only ref tagless', () => {
    const ref = withDigest(parseReference(`alpine@${D}`), D2);
    expect(ref.tag).toBeUndefined();
    expect(ref.canonical).toBe(`docker.io/library/alpine@${D2}`);
  });

  it('withDigest rejects a bad digest', () => {
    const err = expectInvalid(() => withDigest(parseReference('alpine'), 'sha512:abc'));
    expect(err.message).toMatch(/only sha256/);
    expect(err.data).toMatchObject({ part: 'digest' });
    expect(expectInvalid(() => withDigest(parseReference('alpine'), `sha256:${HEX.slice(1)}`)).message).toMatch(/63 hex/);
  });

  it('works on a structured-cloned reference', () => {
    const cloned = structuredClone(parseReference('user/app:1')) as ImageReference;
    expect(withDigest(cloned, D).canonical).toBe(`docker.io/user/app:1@${D}`);
  });
});

describe('downloadFileName', () => {
  const cases: Array<[string, string, string?]> = [
    ['alpine', 'alpine_latest.tar'],
    ['alpine:latest', 'alpine_latest.tar'],
    ['ghcr.io/o/r:v1', 'ghcr.io_o_r_v1.tar'],
    ['user/app:1', 'user_app_1.tar'],
    [`alpine@${D}`, 'alpine_sha256-abcdef012345.tar'],
    [`alpine:3.20@${D}`, 'alpine_3.20.tar'],
    ['localhost:5000/ns/x:V1_0', 'localhost_5000_ns_x_V1_0.tar'],
    ['[::1]:5000/x:v', '___1__5000_x_v.tar'],
    ['library/a/b', 'library_a_b_latest.tar'],
    ['alpine', 'alpine_latest.oci.tar', '.oci.tar'],
    ['alpine', 'alpine_latest.tar', '.t/a\\r'],
  ];

  it.each(cases)('%s → %s', (input, expected, ext) => {
    expect(downloadFileName(parseReference(input), ext)).toBe(expected);
  });

  it('only uses safe characters and stays within 255 characters', () => {
    const ref = parseReference(`ghcr.io/${'b'.repeat(247)}:${'T'.repeat(128)}`);
    const file = downloadFileName(ref);
    expect(file).toMatch(/^[A-Za-z0-9._-]+\.tar$/);
    expect(file.length).toBe(255);
  });
});

describe('isLoopbackHost', () => {
  const cases: Array<[string, boolean]> = [
    ['localhost', true],
    ['LOCALHOST', true],
    ['localhost:5000', true],
    ['127.0.0.1', true],
    ['127.0.0.1:5000', true],
    ['127.255.10.2', true],
    ['[::1]', true],
    ['[::1]:5000', true],
    ['::1', true],
    ['[0:0:0:0:0:0:0:1]', true],
    ['[0::1]:80', true],
    ['128.0.0.1', false],
    ['127.0.0.256', false],
    ['127.0.0.01', false],
    ['127.0.0', false],
    ['localhost.example.com', false],
    // RFC 6761 §6.3: every name under .localhost is loopback.
    ['foo.localhost', true],
    ['registry.test.localhost:5000', true],
    ['FOO.LOCALHOST', true],
    ['localhost.', true],
    ['.localhost', false],
    ['foo..localhost', false],
    ['notlocalhost', false],
    ['localhost.evil.com', false],
    // IPv4-mapped loopback (RFC 4291 §2.5.5.2), dotted or in hex.
    ['[::ffff:127.0.0.1]', true],
    ['[::ffff:127.1.2.3]:5000', true],
    ['[::ffff:7f00:1]', true],
    ['[0:0:0:0:0:ffff:127.0.0.1]', true],
    ['::ffff:127.0.0.1', true],
    ['[::ffff:10.0.0.1]', false],
    ['[::ffff:128.0.0.1]', false],
    ['[::ffff:127.0.0.256]', false],
    // The deprecated IPv4-compatible form (RFC 4291 §2.5.5.1) still means 127.0.0.1: loopback, as the proxy's address rules say.
    ['[::127.0.0.1]', true],
    ['[::fffe:127.0.0.1]', false],
    ['[1::ffff:127.0.0.1]', false],
    ['localhost:99999', false],
    ['localhost:', false],
    ['[::2]', false],
    ['[::1', false],
    ['[::1]x', false],
    ['::', false],
    ['10.0.0.1', false],
    ['ghcr.io', false],
    ['', false],
  ];

  it.each(cases)('%s → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });

  it('agrees with registries parsed from references', () => {
    expect(isLoopbackHost(parseReference('localhost:5000/x').registry)).toBe(true);
    expect(isLoopbackHost(parseReference('[::1]:5000/x').apiHost)).toBe(true);
    expect(isLoopbackHost(parseReference('alpine').apiHost)).toBe(false);
  });
});
