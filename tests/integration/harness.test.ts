// Smoke test of the real-registry harness, judged only by independent parts (node fetch + skopeo + GNU tar),
// never by project code: if this fails, integration failures elsewhere are about the harness, not longshore.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { run } from '../helpers/command.ts';
import { FIXTURE_NAMES, FIXTURES, MULTI_PLATFORMS, archFileContent } from '../helpers/fixtures.ts';
import { fixtureRef, readRequestLog, requestLogMark } from '../helpers/harness.ts';
import { MediaType, skopeoInspectRaw } from '../helpers/images.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import type { TokenRequestRecord } from '../helpers/token-server.ts';

const env = inject('registryEnv');
const skopeoEnv = { ...process.env, ...env.skopeoEnv };
const ACCEPT_ALL = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList].join(', ');

const sha256 = (bytes: ArrayBuffer | Uint8Array) => `sha256:${createHash('sha256').update(new Uint8Array(bytes)).digest('hex')}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function parseChallenge(header: string | null): Record<string, string> {
  expect(header).toMatch(/^Bearer /);
  return Object.fromEntries([...header!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
}

async function tokenFor(
  repository: string,
  authorization?: string,
  realm = env.tokenServer.realm,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(realm);
  url.searchParams.set('service', env.token.service);
  url.searchParams.append('scope', `repository:${repository}:pull`);
  const response = await fetch(url, { headers: authorization ? { authorization } : {} });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('real-registry harness', () => {
  it('anonymous registry answers /v2/ with 200', async () => {
    const response = await fetch(`${env.anon.url}/v2/`);
    expect(response.status).toBe(200);
  });

  it('token registry challenges with a realm on another origin', async () => {
    const response = await fetch(`${env.token.url}/v2/`);
    expect(response.status).toBe(401);
    const header = response.headers.get('www-authenticate');
    expect(header).toBe(`Bearer realm="${env.tokenServer.origin}/token",service="${env.token.service}"`);
    expect(new URL(parseChallenge(header).realm!).origin).not.toBe(new URL(env.token.url).origin);
  });

  it('a token from the realm reads a manifest, and the token server logged the request', async () => {
    const since = await requestLogMark(env.tokenServer.requestLogUrl);
    const truth = env.fixtures.oci;
    const challenge = await fetch(`${env.token.url}/v2/${truth.repository}/manifests/${truth.tag}`, { headers: { accept: ACCEPT_ALL } });
    expect(challenge.status).toBe(401);
    expect(parseChallenge(challenge.headers.get('www-authenticate')).scope).toBe(`repository:${truth.repository}:pull`);

    const { status, body } = await tokenFor(truth.repository);
    expect(status).toBe(200);
    expect(body).toMatchObject({ expires_in: 300 });
    expect(body.token).toBe(body.access_token);
    expect(typeof body.issued_at).toBe('string');

    const response = await fetch(`${env.token.url}/v2/${truth.repository}/manifests/${truth.tag}`, {
      headers: { accept: ACCEPT_ALL, authorization: `Bearer ${body.token as string}` },
    });
    expect(response.status).toBe(200);
    const bytes = await response.arrayBuffer();
    expect(sha256(bytes)).toBe(truth.manifest.digest);
    expect(response.headers.get('docker-content-digest')).toBe(truth.manifest.digest);

    const log = await readRequestLog<TokenRequestRecord>(env.tokenServer.requestLogUrl, since);
    const mine = log.find((r) => r.query.scope?.includes(`repository:${truth.repository}:pull`));
    expect(mine).toMatchObject({
      path: '/token',
      hasAuthorization: false,
      status: 200,
      granted: [{ type: 'repository', name: truth.repository, actions: ['pull'] }],
    });
    expect(mine!.query.service).toEqual([env.token.service]);
  });

  it('the access-token-only realm answers without `token`, and its access_token works', async () => {
    const response = await fetch(`${env.tokenAccessOnly.url}/v2/`);
    expect(parseChallenge(response.headers.get('www-authenticate')).realm).toBe(env.tokenServer.accessTokenOnlyRealm);
    const { status, body } = await tokenFor('test/v2s2', undefined, env.tokenServer.accessTokenOnlyRealm);
    expect(status).toBe(200);
    expect(body.token).toBeUndefined();
    const manifest = await fetch(`${env.tokenAccessOnly.url}/v2/test/v2s2/manifests/latest`, {
      headers: { accept: ACCEPT_ALL, authorization: `Bearer ${body.access_token as string}` },
    });
    expect(manifest.status).toBe(200);
    expect(sha256(await manifest.arrayBuffer())).toBe(env.fixtures.v2s2.manifest.digest);
  });

  it('private/secret is denied anonymously, readable with credentials, and wrong credentials get 401', async () => {
    const truth = env.fixtures.private;
    const url = `${env.token.url}/v2/${truth.repository}/manifests/${truth.tag}`;
    const anonymous = await tokenFor(truth.repository);
    expect(anonymous.status).toBe(200);
    const denied = await fetch(url, { headers: { accept: ACCEPT_ALL, authorization: `Bearer ${anonymous.body.token as string}` } });
    expect(denied.status).toBe(401);

    const { username, password } = env.tokenServer.credentials;
    const wrong = await tokenFor(truth.repository, basic(username, 'not-the-password'));
    expect(wrong.status).toBe(401);
    expect(wrong.body).toHaveProperty('details');

    const granted = await tokenFor(truth.repository, basic(username, password));
    expect(granted.status).toBe(200);
    const allowed = await fetch(url, { headers: { accept: ACCEPT_ALL, authorization: `Bearer ${granted.body.token as string}` } });
    expect(allowed.status).toBe(200);
    expect(sha256(await allowed.arrayBuffer())).toBe(truth.manifest.digest);
  });

  it('a blob GET on the token registry redirects (307) to the static origin, which serves the right bytes', async () => {
    const truth = env.fixtures.v2s2;
    const layer = (JSON.parse(truth.manifest.raw) as { layers: Array<{ digest: string; size: number }> }).layers[0]!;
    const { body } = await tokenFor(truth.repository);
    const redirect = await fetch(`${env.token.url}/v2/${truth.repository}/blobs/${layer.digest}`, {
      headers: { authorization: `Bearer ${body.token as string}` },
      redirect: 'manual',
    });
    expect(redirect.status).toBe(307);
    const location = new URL(redirect.headers.get('location')!, env.token.url);
    expect(location.origin).toBe(env.staticServer.origin);

    const blob = await fetch(location);
    expect(blob.status).toBe(200);
    const bytes = await blob.arrayBuffer();
    expect(bytes.byteLength).toBe(layer.size);
    expect(sha256(bytes)).toBe(layer.digest);

    const ranged = await fetch(location, { headers: { range: 'bytes=0-9' } });
    expect(ranged.status).toBe(206);
    expect((await ranged.arrayBuffer()).byteLength).toBe(10);
  });

  it('basic registry: 401 without credentials, 200 with', async () => {
    const without = await fetch(`${env.basic.url}/v2/`);
    expect(without.status).toBe(401);
    expect(without.headers.get('www-authenticate')).toBe(`Basic realm="${env.basic.realm}"`);
    const { username, password } = env.basic.credentials;
    const withCredentials = await fetch(`${env.basic.url}/v2/`, { headers: { authorization: basic(username, password) } });
    expect(withCredentials.status).toBe(200);
  });

  it.each(FIXTURE_NAMES)('skopeo reads fixture %s identically from every registry', async (name) => {
    const truth = env.fixtures[name];
    expect(truth.path).toBe(`${FIXTURES[name].repository}:${FIXTURES[name].tag}`);
    expect(sha256(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(truth.manifest.digest);
    const [fromToken, fromBasic] = await Promise.all([
      skopeoInspectRaw(`docker://${fixtureRef(env, env.token, name)}`, { env: skopeoEnv, credentials: env.token.credentials }),
      skopeoInspectRaw(`docker://${fixtureRef(env, env.basic, name)}`, { env: skopeoEnv, credentials: env.basic.credentials }),
    ]);
    expect(sha256(fromToken)).toBe(truth.manifest.digest);
    expect(sha256(fromBasic)).toBe(truth.manifest.digest);
    // The cooked form reads the config blob too (through the redirect on the token registry).
    const cooked = JSON.parse(
      (
        await run(
          'skopeo',
          [
            '--insecure-policy',
            '--override-arch',
            'amd64',
            '--override-os',
            'linux',
            'inspect',
            '--tls-verify=false',
            `docker://${fixtureRef(env, env.anon, name)}`,
          ],
          { env: skopeoEnv },
        )
      ).toString('utf8'),
    ) as { Architecture: string; Os: string };
    expect(cooked).toMatchObject({ Architecture: 'amd64', Os: 'linux' });
  });

  it('manifest media types are the ones each fixture promises', () => {
    const { fixtures } = env;
    expect(fixtures.v2s2.manifest.mediaType).toBe(MediaType.dockerManifest);
    expect((JSON.parse(fixtures.v2s2.manifest.raw) as { layers: unknown[] }).layers).toHaveLength(3);
    expect(fixtures.oci.manifest.mediaType).toBe(MediaType.ociManifest);
    expect(fixtures.ociV1.manifest.digest).not.toBe(fixtures.oci.manifest.digest);
    const layerTypes = (name: 'plain' | 'zstd' | 'oci') =>
      (JSON.parse(fixtures[name].manifest.raw) as { layers: Array<{ mediaType: string }> }).layers.map((l) => l.mediaType);
    expect(layerTypes('oci')).toEqual([MediaType.ociLayerGzip, MediaType.ociLayerGzip]);
    expect(layerTypes('plain')).toEqual([MediaType.ociLayer, MediaType.ociLayer]);
    expect(layerTypes('zstd')).toEqual([MediaType.ociLayerZstd, MediaType.ociLayerZstd]);
  });

  it('the multi index has three platforms and a buildx attestation for amd64', () => {
    const multi = env.fixtures.multi;
    expect(multi.manifest.mediaType).toBe(MediaType.ociIndex);
    const children = multi.children!;
    expect(children.map((c) => c.platform)).toEqual([...MULTI_PLATFORMS, { architecture: 'unknown', os: 'unknown' }]);
    const attestation = children[3]!;
    expect(attestation.annotations).toEqual({
      'vnd.docker.reference.type': 'attestation-manifest',
      'vnd.docker.reference.digest': children[0]!.manifest.digest,
    });
    expect((JSON.parse(attestation.manifest.raw) as { layers: Array<{ mediaType: string }> }).layers[0]!.mediaType).toBe(MediaType.inToto);
    for (const child of children.slice(0, 3)) {
      const config = JSON.parse(child.config.raw) as { architecture: string; variant?: string };
      expect(config.architecture).toBe(child.platform.architecture);
      expect(config.variant).toBe(child.platform.variant);
    }
  });

  it('the list is a Docker manifest list of schema 2 manifests', async () => {
    const list = env.fixtures.list;
    expect(list.manifest.mediaType).toBe(MediaType.dockerManifestList);
    expect(list.children!.map((c) => c.manifest.mediaType)).toEqual([MediaType.dockerManifest, MediaType.dockerManifest]);
    // The registry's own Content-Type agrees with the body.
    const response = await fetch(`${env.anon.url}/v2/${list.repository}/manifests/${list.tag}`, { headers: { accept: ACCEPT_ALL } });
    expect(response.headers.get('content-type')).toBe(MediaType.dockerManifestList);
  });

  it('skopeo copies arm64 from the token registry through the redirect, and its arch file says arm64/v8', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'longshore-harness-copy-'));
    try {
      await run(
        'skopeo',
        [
          '--insecure-policy',
          '--override-arch',
          'arm64',
          '--override-variant',
          'v8',
          'copy',
          '--quiet',
          '--src-tls-verify=false',
          `docker://${fixtureRef(env, env.token, 'multi')}`,
          `dir:${dir}`,
        ],
        { env: skopeoEnv },
      );
      const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string }> };
      const first = join(dir, manifest.layers[0]!.digest.replace('sha256:', ''));
      const content = await run('tar', ['-xzOf', first, 'etc/longshore-arch']);
      expect(content.toString('utf8')).toBe(archFileContent('arm64', 'v8'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('no request to the static server has ever carried Authorization', async () => {
    const log = await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl);
    expect(log.length).toBeGreaterThan(0);
    expect(log.filter((r) => r.headers.authorization !== undefined)).toEqual([]);
  });
});
