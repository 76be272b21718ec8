// Pushes straight through the distribution API (spec "Push"): monolithic blob uploads, cross-repository
// mounts and manifest PUTs, for set-ups skopeo makes slowly (2,500 tags) or a test needs unique
// (a repository only one test touches). Test-only: talks to the anonymous loopback registry.
import { createHash } from 'node:crypto';

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export const digestOf = (bytes: Uint8Array | string): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function ok(response: Response, what: string): Promise<Response> {
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status} ${await response.text()}`);
  return response;
}

/** Uploads one blob in a single PUT (POST then PUT ?digest=); returns its digest. */
export async function pushBlob(registryUrl: string, repository: string, bytes: Uint8Array): Promise<string> {
  const digest = digestOf(bytes);
  const head = await fetch(`${registryUrl}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
  if (head.ok) return digest;
  const started = await ok(
    await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' }),
    `start upload to ${repository}`,
  );
  const location = new URL(started.headers.get('location')!, registryUrl);
  location.searchParams.set('digest', digest);
  await ok(
    await fetch(location, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: bytes as BodyInit }),
    `upload ${digest}`,
  );
  return digest;
}

/** Mounts a blob another repository of the same registry holds (spec "Mounting a blob from another repository"). */
export async function mountBlob(registryUrl: string, from: string, to: string, digest: string): Promise<void> {
  const response = await fetch(`${registryUrl}/v2/${to}/blobs/uploads/?mount=${digest}&from=${from}`, { method: 'POST' });
  if (response.status !== 201) throw new Error(`mount ${digest} from ${from} into ${to}: HTTP ${response.status}`);
}

export async function putManifest(
  registryUrl: string,
  repository: string,
  reference: string,
  bytes: Uint8Array | string,
  mediaType: string,
): Promise<string> {
  await ok(
    await fetch(`${registryUrl}/v2/${repository}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: bytes as BodyInit,
    }),
    `put manifest ${repository}:${reference}`,
  );
  return digestOf(bytes);
}

export async function getManifest(
  registryUrl: string,
  repository: string,
  reference: string,
): Promise<{ bytes: Uint8Array; mediaType: string }> {
  const response = await ok(
    await fetch(`${registryUrl}/v2/${repository}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT } }),
    `get ${repository}:${reference}`,
  );
  return { bytes: new Uint8Array(await response.arrayBuffer()), mediaType: (response.headers.get('content-type') ?? '').split(';')[0]! };
}

/** Copies a single-image manifest (not an index) to another repository and tag, mounting its blobs. */
export async function copyImage(registryUrl: string, from: string, reference: string, to: string, tag: string): Promise<string> {
  const { bytes, mediaType } = await getManifest(registryUrl, from, reference);
  const manifest = JSON.parse(new TextDecoder().decode(bytes)) as { config: { digest: string }; layers: { digest: string }[] };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) await mountBlob(registryUrl, from, to, d);
  return putManifest(registryUrl, to, tag, bytes, mediaType);
}

export interface PushedImage {
  /** The manifest's digest. */
  digest: string;
  config: string;
  /** Layer digests (uncompressed tars: also the diff_ids). */
  layers: string[];
}

/** Pushes a linux/amd64 OCI image of uncompressed tar layers (`application/vnd.oci.image.layer.v1.tar`). */
export async function pushImage(registryUrl: string, repository: string, tag: string, layerTars: Uint8Array[]): Promise<PushedImage> {
  const layers: string[] = [];
  for (const tar of layerTars) layers.push(await pushBlob(registryUrl, repository, tar));
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-01T00:00:00Z',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'registry-api.ts' })),
  });
  const configBytes = new TextEncoder().encode(config);
  const configDigest = await pushBlob(registryUrl, repository, configBytes);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBytes.length },
    layers: layerTars.map((t, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layers[i]!, size: t.length })),
  });
  const digest = await putManifest(registryUrl, repository, tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { digest, config: configDigest, layers };
}

/**
 * One small image under `count` tags (`prefix` + zero-padded index), by PUTting its manifest once
 * per tag, a few at a time: 2,500 tags take seconds, where skopeo copies would take minutes.
 */
export async function pushManyTags(
  registryUrl: string,
  repository: string,
  count: number,
  prefix = 'v',
): Promise<{ image: PushedImage; tags: string[] }> {
  const layer = new Uint8Array(1024); // an empty tar: two zero blocks
  const image = await pushImage(registryUrl, repository, `${prefix}seed`, [layer]);
  const { bytes, mediaType } = await getManifest(registryUrl, repository, `${prefix}seed`);
  const width = String(count - 1).length;
  const tags = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(width, '0')}`);
  let next = 0;
  const worker = async () => {
    while (next < tags.length) await putManifest(registryUrl, repository, tags[next++]!, bytes, mediaType);
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { image, tags: [...tags, `${prefix}seed`].sort() };
}

/** Copies an image or a whole index (children by digest first) to another repository and tag, mounting blobs. */
export async function copyManifest(registryUrl: string, from: string, reference: string, to: string, tag: string): Promise<string> {
  const { bytes, mediaType } = await getManifest(registryUrl, from, reference);
  const parsed = JSON.parse(new TextDecoder().decode(bytes)) as {
    manifests?: { digest: string }[];
    config?: { digest: string };
    layers?: { digest: string }[];
  };
  for (const child of parsed.manifests ?? []) await copyManifest(registryUrl, from, child.digest, to, child.digest);
  for (const d of [...(parsed.config ? [parsed.config.digest] : []), ...(parsed.layers ?? []).map((l) => l.digest)])
    await mountBlob(registryUrl, from, to, d);
  return putManifest(registryUrl, to, tag, bytes, mediaType);
}
