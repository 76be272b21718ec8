// The core pull engine against real distribution registries. Every check is judged by something other than
// longshore: the truth skopeo read back, sha256 from node:crypto, GNU tar listing the served blobs, and the
// token and static servers' own request logs.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { describe, expect, inject, it } from 'vitest';
import type { Image, ImageIndex } from '../../src/core/image/model.ts';
import { parsePlatform } from '../../src/core/image/platform.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import type { PullEvent } from '../../src/core/progress.ts';
import { pull, type PullOptions } from '../../src/core/pull.ts';
import { parseReference } from '../../src/core/reference.ts';
import type { Credentials } from '../../src/core/registry/auth.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { runText } from '../helpers/command.ts';
import { archFileContent, type FixtureName, type FixtureTruth } from '../helpers/fixtures.ts';
import { fixtureRef, readRequestLog, requestLogMark } from '../helpers/harness.ts';
import { MediaType, sha256Digest } from '../helpers/images.ts';
import type { StaticRequestRecord } from '../helpers/static-server.ts';
import type { TokenRequestRecord } from '../helpers/token-server.ts';
import { rejection } from '../helpers/assert.ts';

const env = inject('registryEnv');

/** A request as the injected fetch saw it (redirect hops included, since the client follows them by hand). */
interface Sent {
  url: string;
  host: string;
  method: string;
  authorization: string | null;
  status: number;
}

/** Marks this client's requests so the shared servers' logs can be filtered to them (tests run in parallel). */
const MARK_HEADER = 'x-longshore-test';
const MARK_QUERY = 'longshore_test';

interface Setup {
  client: RegistryClient;
  source: RemoteSource;
  sent: Sent[];
  marker: string;
}

function setup(options: { credentials?: (host: string) => Credentials | undefined } = {}): Setup {
  const sent: Sent[] = [];
  const marker = randomUUID();
  const fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set(MARK_HEADER, marker);
    const url = new URL(input);
    if (url.origin === env.tokenServer.origin) url.searchParams.append(MARK_QUERY, marker);
    const response = await globalThis.fetch(url, { ...init, headers });
    sent.push({
      url: url.toString(),
      host: url.host,
      method: init.method ?? 'GET',
      authorization: headers.get('authorization'),
      status: response.status,
    });
    return response;
  };
  const client = new RegistryClient({ transport: { fetch }, ...(options.credentials ? { credentials: options.credentials } : {}) });
  return { client, source: new RemoteSource(client), sent, marker };
}

const only = (host: string, credentials: Credentials) => (registry: string) => (registry === host ? credentials : undefined);

interface TruthDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

function truthManifest(truth: { raw: string }): { config: TruthDescriptor; layers: TruthDescriptor[] } {
  return JSON.parse(truth.raw) as { config: TruthDescriptor; layers: TruthDescriptor[] };
}

function truthConfig(truth: { raw: string }): { architecture: string; variant?: string; rootfs: { diff_ids: string[] } } {
  return JSON.parse(truth.raw) as { architecture: string; variant?: string; rootfs: { diff_ids: string[] } };
}

async function stored(store: MemoryBlobStore, key: string): Promise<Buffer | undefined> {
  const stream = await store.open(key);
  if (!stream) return undefined;
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Every key the store holds is the sha256 of what it holds: only verified blobs were kept. */
async function expectOnlyVerified(store: MemoryBlobStore): Promise<void> {
  for (const key of store.keys()) expect(sha256Digest((await stored(store, key))!), key).toBe(key);
}

/** The blob exactly as the anonymous registry serves it, fetched without longshore. */
async function servedBlob(repository: string, digest: string): Promise<Buffer> {
  const response = await fetch(`${env.anon.url}/v2/${repository}/blobs/${digest}`);
  expect(response.status).toBe(200);
  const bytes = Buffer.from(await response.arrayBuffer());
  expect(sha256Digest(bytes)).toBe(digest);
  return bytes;
}

function tarCompressionFlags(mediaType: string): string[] {
  if (mediaType.endsWith('gzip')) return ['-z'];
  if (mediaType.endsWith('zstd')) return ['--zstd'];
  return [];
}

/** A zstd decoder for `uncompressed` pulls: the reference `zstd -dc` behind a web stream pair. */
function zstdDecoder(): TransformStream<Uint8Array, Uint8Array> {
  const child = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
  return { writable: Writable.toWeb(child.stdin), readable: Readable.toWeb(child.stdout) } as unknown as TransformStream<
    Uint8Array,
    Uint8Array
  >;
}

const SINGLE: FixtureName[] = ['v2s2', 'oci', 'plain', 'zstd'];

describe('anonymous pull of single images', () => {
  it.each(SINGLE)(
    '%s: manifest and config byte-exact, layers verified in the store, progress adds up, second pull cached',
    async (name) => {
      const truth = env.fixtures[name];
      const { layers, config } = truthManifest(truth.manifest);
      const ref = parseReference(fixtureRef(env, env.anon, name));

      const first = setup();
      const resolved = await first.source.resolve(ref);
      expect(resolved.kind).toBe('image');
      const image = resolved as Image;
      expect(image.digest).toBe(truth.manifest.digest);
      expect(image.mediaType).toBe(truth.manifest.mediaType);
      expect(Buffer.from(image.manifestBytes).equals(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(true);
      expect(Buffer.from(image.configBytes).equals(Buffer.from(truth.config.raw, 'utf8'))).toBe(true);
      expect(sha256Digest(image.configBytes)).toBe(config.digest);
      expect(image.layers.map((l) => l.descriptor.digest)).toEqual(layers.map((l) => l.digest));

      const store = new MemoryBlobStore();
      const events: PullEvent[] = [];
      const result = await pull(first.source, ref, { store, onProgress: (e) => events.push(e) });
      expect(result.image.digest).toBe(truth.manifest.digest);
      for (const layer of layers) {
        const bytes = await stored(store, layer.digest);
        expect(bytes, `layer ${layer.digest} stored`).toBeDefined();
        expect(bytes!.byteLength).toBe(layer.size);
        expect(await store.size(layer.digest)).toBe(layer.size);
        expect(sha256Digest(bytes!)).toBe(layer.digest);
      }
      await expectOnlyVerified(store);

      const totalBytes = layers.reduce((n, l) => n + l.size, 0);
      const plan = events.find((e) => e.type === 'plan');
      expect(plan).toMatchObject({ totalBytes });
      const layerEvents = events.filter((e): e is Extract<PullEvent, { type: 'layer' }> => e.type === 'layer');
      // Bytes reported while downloading, per layer: the last 'downloading' count is every byte that passed.
      const downloaded = layers.map(
        (l) => layerEvents.filter((e) => e.digest === l.digest && e.state === 'downloading').at(-1)?.done ?? -1,
      );
      expect(downloaded).toEqual(layers.map((l) => l.size));
      expect(downloaded.reduce((n, d) => n + d, 0)).toBe(totalBytes);
      expect(layers.map((l) => layerEvents.filter((e) => e.digest === l.digest).at(-1)?.state)).toEqual(layers.map(() => 'done'));

      const second = setup();
      const secondEvents: PullEvent[] = [];
      await pull(second.source, ref, { store, onProgress: (e) => secondEvents.push(e) });
      const blobGets = second.sent.filter((s) => layers.some((l) => s.url.endsWith(`/blobs/${l.digest}`)));
      expect(blobGets).toEqual([]);
      const secondLayerEvents = secondEvents.filter((e): e is Extract<PullEvent, { type: 'layer' }> => e.type === 'layer');
      expect(secondLayerEvents.map((e) => [e.digest, e.state, e.done])).toEqual(layers.map((l) => [l.digest, 'cached', l.size]));
      expect(secondEvents.find((e) => e.type === 'plan')).toMatchObject({
        totalBytes,
        layers: layers.map((l) => ({ digest: l.digest, cached: true })),
      });
    },
  );
});

describe('uncompressed layers', () => {
  it.each(SINGLE)('%s: each layer kept under its diff_id, which GNU tar lists like the served blob', async (name) => {
    const truth = env.fixtures[name];
    const { layers } = truthManifest(truth.manifest);
    const diffIds = truthConfig(truth.config).rootfs.diff_ids;
    expect(diffIds).toHaveLength(layers.length);
    const store = new MemoryBlobStore();
    const { source } = setup();
    const options: PullOptions = { store, uncompressed: true, ...(name === 'zstd' ? { zstd: zstdDecoder } : {}) };
    await pull(source, parseReference(fixtureRef(env, env.anon, name)), options);
    await expectOnlyVerified(store);

    for (const [i, layer] of layers.entries()) {
      expect(sha256Digest((await stored(store, layer.digest))!)).toBe(layer.digest);
      const plain = await stored(store, diffIds[i]!);
      expect(plain, `diff_id ${diffIds[i]} stored`).toBeDefined();
      expect(sha256Digest(plain!)).toBe(diffIds[i]);

      const served = await servedBlob(truth.repository, layer.digest);
      const fromRegistry = await runText('tar', ['-tv', ...tarCompressionFlags(layer.mediaType), '-f', '-'], { input: served });
      const fromStore = await runText('tar', ['-tvf', '-'], { input: plain! });
      expect(fromRegistry.trim()).not.toBe('');
      expect(fromStore).toBe(fromRegistry);
    }
    if (name === 'v2s2') {
      const listing = await runText('tar', ['-tvf', '-'], { input: (await stored(store, diffIds[0]!))! });
      expect(listing).toMatch(/usr\/share\/blob\.bin/);
    }
  });

  it.each(SINGLE)(
    '%s: keepCompressed: false keeps one copy per layer (the diff_id; the blob itself when served uncompressed), and a second pull finds them all cached',
    async (name) => {
      const truth = env.fixtures[name];
      const { layers } = truthManifest(truth.manifest);
      const diffIds = truthConfig(truth.config).rootfs.diff_ids;
      const store = new MemoryBlobStore();
      const { source } = setup();
      const options: PullOptions = { store, uncompressed: true, keepCompressed: false, ...(name === 'zstd' ? { zstd: zstdDecoder } : {}) };
      await pull(source, parseReference(fixtureRef(env, env.anon, name)), options);
      await expectOnlyVerified(store);
      // Exactly the diff_ids: for a layer served uncompressed the diff_id is its digest.
      expect([...new Set(store.keys())].sort()).toEqual([...new Set(diffIds)].sort());
      for (const [i, layer] of layers.entries()) {
        if (layer.digest !== diffIds[i]) expect(store.keys()).not.toContain(layer.digest);
      }
      const events: PullEvent[] = [];
      await pull(source, parseReference(fixtureRef(env, env.anon, name)), { ...options, onProgress: (e) => events.push(e) });
      const states = events.filter((e) => e.type === 'layer').map((e) => (e as { state: string }).state);
      expect(states).toHaveLength(layers.length);
      expect(new Set(states)).toEqual(new Set(['cached']));
    },
  );

  it.each(['v2s2', 'oci', 'zstd'] as const)(
    '%s: layers kept compressed by an earlier pull are decompressed from the store, not fetched again',
    async (name) => {
      const truth = env.fixtures[name];
      const { layers } = truthManifest(truth.manifest);
      const diffIds = truthConfig(truth.config).rootfs.diff_ids;
      const store = new MemoryBlobStore();
      await pull(setup().source, parseReference(fixtureRef(env, env.anon, name)), { store });
      const second = setup();
      await pull(second.source, parseReference(fixtureRef(env, env.anon, name)), {
        store,
        uncompressed: true,
        keepCompressed: false,
        ...(name === 'zstd' ? { zstd: zstdDecoder } : {}),
      });
      for (const layer of layers) expect(second.sent.filter((r) => r.url.includes(`/blobs/${layer.digest}`))).toEqual([]);
      for (const d of diffIds) expect(store.keys()).toContain(d);
      await expectOnlyVerified(store);
    },
  );

  it('a compressed blob in the store that does not decompress to its diff_id is fetched from the registry instead', async () => {
    const truth = env.fixtures.v2s2;
    const { layers } = truthManifest(truth.manifest);
    const diffIds = truthConfig(truth.config).rootfs.diff_ids;
    const store = new MemoryBlobStore();
    await pull(setup().source, parseReference(fixtureRef(env, env.anon, 'v2s2')), { store });
    // Spoil the kept copy of layer 1 (a store that rotted on disk): same key, other bytes.
    const spoiled = layers[0]!.digest;
    const bytes = (await stored(store, spoiled))!;
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await store.put(spoiled, new Response(new Uint8Array(bytes)).body!);
    const second = setup();
    await pull(second.source, parseReference(fixtureRef(env, env.anon, 'v2s2')), { store, uncompressed: true, keepCompressed: false });
    expect(second.sent.filter((r) => r.url.includes(`/blobs/${spoiled}`)).length).toBeGreaterThan(0);
    for (const layer of layers.slice(1)) expect(second.sent.filter((r) => r.url.includes(`/blobs/${layer.digest}`))).toEqual([]);
    for (const d of diffIds) expect(sha256Digest((await stored(store, d))!)).toBe(d);
  });

  it('zstd layers without a decoder fail with FORMAT, and no diff_id is kept', async () => {
    const truth = env.fixtures.zstd;
    const diffIds = truthConfig(truth.config).rootfs.diff_ids;
    const store = new MemoryBlobStore();
    const { source } = setup();
    const pulling = pull(source, parseReference(fixtureRef(env, env.anon, 'zstd')), { store, uncompressed: true, zstd: null });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('pull did not settle within 10 s')), 10_000).unref(),
    );
    const error = await rejection(Promise.race([pulling, timeout]));
    expect(error.code).toBe('FORMAT');
    for (const diffId of diffIds) expect(await store.has(diffId)).toBe(false);
    await expectOnlyVerified(store);
  });
});

describe('indexes and manifest lists', () => {
  const multi = () => env.fixtures.multi;
  const runnable = (truth: FixtureTruth) =>
    truth.children!.filter((c) => c.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest');
  const child = (truth: FixtureTruth, architecture: string, variant?: string) =>
    truth.children!.find((c) => c.platform.architecture === architecture && c.platform.variant === variant)!;

  async function resolveIndex(name: 'multi' | 'list'): Promise<ImageIndex> {
    const resolved = await setup().source.resolve(parseReference(fixtureRef(env, env.anon, name)));
    expect(resolved.kind).toBe('index');
    return resolved as ImageIndex;
  }

  it('multi: the OCI index resolves byte-exact and lists the runnable children only', async () => {
    const truth = multi();
    const index = await resolveIndex('multi');
    expect(index.digest).toBe(truth.manifest.digest);
    expect(index.mediaType).toBe(MediaType.ociIndex);
    expect(Buffer.from(index.manifestBytes).equals(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(true);
    const platforms = index.platforms();
    expect(platforms.map((p) => p.label)).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    expect(platforms.map((p) => p.descriptor.digest)).toEqual(runnable(truth).map((c) => c.manifest.digest));
    expect(truth.children!).toHaveLength(4);
  });

  it.each([
    ['linux/amd64', 'amd64', undefined],
    ['linux/arm64', 'arm64', 'v8'],
    ['linux/arm/v7', 'arm', 'v7'],
    ['linux/arm/v8', 'arm', 'v7'],
  ] as const)('multi: %s chooses the %s %s child', async (platform, architecture, variant) => {
    const truth = child(multi(), architecture, variant);
    const index = await resolveIndex('multi');
    const image = await index.image(parsePlatform(platform));
    expect(image.digest).toBe(truth.manifest.digest);
    expect(Buffer.from(image.manifestBytes).equals(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(true);
    expect(Buffer.from(image.configBytes).equals(Buffer.from(truth.config.raw, 'utf8'))).toBe(true);
    expect(image.config.architecture).toBe(architecture);
    expect(image.config.variant).toBe(variant);
  });

  it('multi: pulling linux/arm/v7 keeps the arm/v7 layers (GNU tar reads /etc/longshore-arch from them)', async () => {
    const truth = child(multi(), 'arm', 'v7');
    const store = new MemoryBlobStore();
    const { image, index } = await pull(setup().source, parseReference(fixtureRef(env, env.anon, 'multi')), {
      store,
      platform: parsePlatform('linux/arm/v7'),
    });
    expect(index?.digest).toBe(multi().manifest.digest);
    expect(image.digest).toBe(truth.manifest.digest);
    const base = truthManifest(truth.manifest).layers[0]!;
    const archFile = await runText('tar', ['-xO', ...tarCompressionFlags(base.mediaType), '-f', '-', 'etc/longshore-arch'], {
      input: (await stored(store, base.digest))!,
    });
    expect(archFile).toBe(archFileContent('arm', 'v7'));
    await expectOnlyVerified(store);
  });

  it.each(['unknown/unknown', 'linux/s390x'])('multi: %s → NO_MATCHING_PLATFORM listing what exists', async (platform) => {
    const index = await resolveIndex('multi');
    const error = await rejection(index.image(parsePlatform(platform)));
    expect(error.code).toBe('NO_MATCHING_PLATFORM');
    expect(error.data['available']).toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
    for (const label of ['linux/amd64', 'linux/arm64', 'linux/arm/v7']) expect(error.message).toContain(label);
    expect(error.hint).toBeTruthy();
  });

  it('list: the Docker manifest list resolves and linux/arm64 picks the arm64 schema 2 child', async () => {
    const truth = env.fixtures.list;
    const index = await resolveIndex('list');
    expect(index.digest).toBe(truth.manifest.digest);
    expect(index.mediaType).toBe(MediaType.dockerManifestList);
    expect(Buffer.from(index.manifestBytes).equals(Buffer.from(truth.manifest.raw, 'utf8'))).toBe(true);
    expect(index.platforms().map((p) => p.label)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(index.platforms().map((p) => p.descriptor.digest)).toEqual(truth.children!.map((c) => c.manifest.digest));
    const arm64 = child(truth, 'arm64', 'v8');
    const image = await index.image(parsePlatform('linux/arm64'));
    expect(image.digest).toBe(arm64.manifest.digest);
    expect(image.mediaType).toBe(MediaType.dockerManifest);
    expect(Buffer.from(image.configBytes).equals(Buffer.from(arm64.config.raw, 'utf8'))).toBe(true);
    expect(image.config.architecture).toBe('arm64');
    const error = await rejection(index.image(parsePlatform('linux/arm/v7')));
    expect(error.code).toBe('NO_MATCHING_PLATFORM');
    expect(error.data['available']).toEqual(['linux/amd64', 'linux/arm64']);
  });
});

describe('bearer-token registry', () => {
  const tokenRecords = async (since: number, marker: string) =>
    (await readRequestLog<TokenRequestRecord>(env.tokenServer.requestLogUrl, since)).filter((r) => r.query[MARK_QUERY]?.includes(marker));
  const staticRecords = async (since: number, marker: string) =>
    (await readRequestLog<StaticRequestRecord>(env.staticServer.requestLogUrl, since)).filter((r) => r.headers[MARK_HEADER] === marker);

  it('anonymous pull: one token for the scope, blobs through the redirect with no Authorization on the static origin', async () => {
    const truth = env.fixtures.v2s2;
    const { layers, config } = truthManifest(truth.manifest);
    const [tokenMark, staticMark] = await Promise.all([
      requestLogMark(env.tokenServer.requestLogUrl),
      requestLogMark(env.staticServer.requestLogUrl),
    ]);
    const { source, sent, marker } = setup();
    const store = new MemoryBlobStore();
    const { image } = await pull(source, parseReference(fixtureRef(env, env.token, 'v2s2')), { store });
    expect(image.digest).toBe(truth.manifest.digest);
    for (const layer of layers) expect(sha256Digest((await stored(store, layer.digest))!)).toBe(layer.digest);

    const tokens = await tokenRecords(tokenMark, marker);
    // Manifest, config and three layers share one token.
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ path: '/token', method: 'GET', status: 200, hasAuthorization: false });
    expect(tokens[0]!.query['scope']).toContain(`repository:${truth.repository}:pull`);
    expect(tokens[0]!.query['service']).toEqual([env.token.service]);
    expect(tokens[0]!.granted).toEqual([{ type: 'repository', name: truth.repository, actions: ['pull'] }]);

    const cdn = await staticRecords(staticMark, marker);
    for (const digest of [config.digest, ...layers.map((l) => l.digest)]) {
      const hex = digest.slice('sha256:'.length);
      expect(
        cdn.some((r) => r.url.endsWith(`/sha256/${hex.slice(0, 2)}/${hex}/data`) && r.status === 200),
        `static server served ${digest}`,
      ).toBe(true);
    }
    expect(cdn.filter((r) => r.headers['authorization'] !== undefined)).toEqual([]);

    // From the client's side: blob GETs were answered with 307, and a Bearer went to the registry alone.
    for (const digest of layers.map((l) => l.digest)) {
      expect(sent.some((s) => s.host === env.token.host && s.url.endsWith(`/blobs/${digest}`) && s.status === 307)).toBe(true);
    }
    expect([...new Set(sent.filter((s) => s.authorization !== null).map((s) => s.host))]).toEqual([env.token.host]);
    expect(sent.filter((s) => s.url.startsWith(env.tokenServer.origin))).toHaveLength(1);
  });

  it("a client seeded with another client's tokens (another Worker) fetches blobs with no 401 and no token request", async () => {
    const truth = env.fixtures.v2s2;
    const { layers } = truthManifest(truth.manifest);
    const ref = parseReference(fixtureRef(env, env.token, 'v2s2'));
    const first = setup();
    const { image } = await pull(first.source, ref, { store: new MemoryBlobStore() });
    const shared = first.client.shareAuth();
    expect(shared.map((a) => a.scope)).toContain(`repository:${truth.repository}:pull`);
    expect(shared.every((a) => a.header.startsWith('Bearer ') && a.expiresAt > Date.now())).toBe(true);

    const second = setup();
    second.client.adoptAuth(structuredClone(shared)); // as it crosses postMessage
    const blob = await second.client.openBlob(image.reference, image.manifest.layers[0]!);
    const bytes = Buffer.from(await new Response(blob).arrayBuffer());
    expect(sha256Digest(bytes)).toBe(layers[0]!.digest);
    expect(second.sent.filter((s) => s.status === 401)).toEqual([]);
    expect(second.sent.filter((s) => s.url.startsWith(env.tokenServer.origin))).toEqual([]);

    // Without the seed, the same request costs a 401 and a token request.
    const third = setup();
    await new Response(await third.client.openBlob(image.reference, image.manifest.layers[0]!)).arrayBuffer();
    expect(third.sent.filter((s) => s.status === 401)).toHaveLength(1);
    expect(third.sent.filter((s) => s.url.startsWith(env.tokenServer.origin))).toHaveLength(1);
  });

  it('private/secret: refused anonymously with a hint, pulled with credentials', async () => {
    const truth = env.fixtures.private;
    const ref = parseReference(fixtureRef(env, env.token, 'private'));
    const anonymous = await rejection(pull(setup().source, ref, { store: new MemoryBlobStore() }));
    // distribution answers a token without access with 401 insufficient_scope, as Docker Hub does.
    expect(anonymous.code).toBe('NOT_FOUND_OR_PRIVATE');
    expect(anonymous.hint).toBeTruthy();
    expect(anonymous.retryable).toBe(false);

    const tokenMark = await requestLogMark(env.tokenServer.requestLogUrl);
    const { source, sent, marker } = setup({ credentials: only(env.token.host, env.token.credentials) });
    const store = new MemoryBlobStore();
    const { image } = await pull(source, ref, { store });
    expect(image.digest).toBe(truth.manifest.digest);
    for (const layer of truthManifest(truth.manifest).layers) expect(sha256Digest((await stored(store, layer.digest))!)).toBe(layer.digest);
    const tokens = await tokenRecords(tokenMark, marker);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ authorizationScheme: 'Basic', username: env.token.credentials.username, status: 200 });
    // Basic credentials only to the token service; the registry only ever saw the Bearer token.
    const tokenHost = new URL(env.tokenServer.origin).host;
    for (const s of sent.filter((x) => x.authorization !== null)) {
      expect(s.authorization!.startsWith(s.host === tokenHost ? 'Basic ' : 'Bearer ')).toBe(true);
      expect([tokenHost, env.token.host]).toContain(s.host);
    }
  });

  it('a wrong password is UNAUTHORIZED and the message names the token service', async () => {
    const credentials = { username: env.token.credentials.username, password: 'not-the-password' };
    const error = await rejection(
      pull(setup({ credentials: only(env.token.host, credentials) }).source, parseReference(fixtureRef(env, env.token, 'private')), {
        store: new MemoryBlobStore(),
      }),
    );
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.message).toContain(env.tokenServer.realm);
    expect(error.hint).toBeTruthy();
  });

  it('a realm that answers only access_token works too', async () => {
    const truth = env.fixtures.oci;
    const tokenMark = await requestLogMark(env.tokenServer.requestLogUrl);
    const { source, marker } = setup();
    const store = new MemoryBlobStore();
    const { image } = await pull(source, parseReference(fixtureRef(env, env.tokenAccessOnly, 'oci')), { store });
    expect(image.digest).toBe(truth.manifest.digest);
    for (const layer of truthManifest(truth.manifest).layers) expect(sha256Digest((await stored(store, layer.digest))!)).toBe(layer.digest);
    const tokens = await tokenRecords(tokenMark, marker);
    expect(tokens.map((t) => [t.path, t.status])).toEqual([['/access-token-only/token', 200]]);
  });
});

describe('basic-auth registry', () => {
  const ref = () => parseReference(fixtureRef(env, env.basic, 'oci'));

  it('without credentials: UNAUTHORIZED', async () => {
    const error = await rejection(pull(setup().source, ref(), { store: new MemoryBlobStore() }));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.hint).toBeTruthy();
  });

  it('wrong credentials: UNAUTHORIZED', async () => {
    const { source } = setup({ credentials: only(env.basic.host, { username: env.basic.credentials.username, password: 'wrong' }) });
    const error = await rejection(pull(source, ref(), { store: new MemoryBlobStore() }));
    expect(error.code).toBe('UNAUTHORIZED');
  });

  it('right credentials: pulls, and they were sent to the registry host only, after a single challenge', async () => {
    const truth = env.fixtures.oci;
    const { source, sent } = setup({ credentials: only(env.basic.host, env.basic.credentials) });
    const store = new MemoryBlobStore();
    const { image } = await pull(source, ref(), { store });
    expect(image.digest).toBe(truth.manifest.digest);
    for (const layer of truthManifest(truth.manifest).layers) expect(sha256Digest((await stored(store, layer.digest))!)).toBe(layer.digest);
    const { username, password } = env.basic.credentials;
    const withAuth = sent.filter((s) => s.authorization !== null);
    expect(withAuth.length).toBeGreaterThan(0);
    expect([...new Set(withAuth.map((s) => s.host))]).toEqual([env.basic.host]);
    expect(new Set(withAuth.map((s) => s.authorization))).toEqual(
      new Set([`Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`]),
    );
    expect(sent.filter((s) => s.status === 401)).toHaveLength(1);
  });
});
