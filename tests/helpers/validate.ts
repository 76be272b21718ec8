// The shared validator: judges an archive we wrote with independent readers only (skopeo, GNU
// tar), against the registry's truth (skopeo inspect --raw, and the blobs as the registry stores
// them on disk).
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, runText } from './command.ts';
import type { BlobTruth, ManifestTruth } from './fixtures.ts';

/** Path of a blob in distribution's filesystem storage. */
export function storedBlobPath(storageDir: string, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return join(storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

/** `tar -tv` lines, normalised: GNU tar's own view of a layer's entries. */
export function tarListing(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/\s+/g, ' ').trim());
}

/** GNU tar's listing of a (possibly compressed) layer blob as the registry stores it. */
export async function registryLayerListing(storageDir: string, digest: string, mediaType: string): Promise<string[]> {
  const flag = mediaType.endsWith('zstd') ? ['--zstd'] : mediaType.endsWith('gzip') ? ['-z'] : [];
  return tarListing(await runText('tar', [...flag, '-tvf', storedBlobPath(storageDir, digest)]));
}

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

export interface DockerArchiveCheck {
  file: string;
  storageDir: string;
  skopeoEnv: NodeJS.ProcessEnv;
  manifest: ManifestTruth;
  config: BlobTruth;
  repoTag: string;
}

/**
 * A `docker save`-style archive (legacy, or the docker 25 hybrid via its manifest.json): skopeo reads it (config byte-exact), skopeo copies it to an OCI
 * layout (which re-verifies every layer against the config's diff_ids), RepoTags is as asked, and
 * every layer.tar lists under GNU tar exactly like the registry's blob.
 */
/** validateDockerArchive for registry fixture `name` (its manifest and config), pulled as `repoTag`. */
export function validateFixtureArchive(
  env: { storageDir: string; skopeoEnv: NodeJS.ProcessEnv; fixtures: Record<string, { manifest: ManifestTruth; config: BlobTruth }> },
  name: string,
  file: string,
  repoTag: string,
): Promise<unknown> {
  const f = env.fixtures[name]!;
  return validateDockerArchive({
    file,
    storageDir: env.storageDir,
    skopeoEnv: env.skopeoEnv,
    manifest: f.manifest,
    config: f.config,
    repoTag,
  });
}

export async function validateDockerArchive(
  c: DockerArchiveCheck,
): Promise<{ inspect: Record<string, unknown>; entries: DockerManifestEntry[] }> {
  const opts = { env: c.skopeoEnv };
  const config = (await run('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `docker-archive:${c.file}`], opts)).toString(
    'utf8',
  );
  if (config !== c.config.raw)
    throw new Error(`config in ${c.file} differs from the registry's:\n${config.slice(0, 300)}\n---\n${c.config.raw.slice(0, 300)}`);
  const inspect = JSON.parse(await runText('skopeo', ['--insecure-policy', 'inspect', `docker-archive:${c.file}`], opts)) as Record<
    string,
    unknown
  >;
  const out = await mkdtemp(join(tmpdir(), 'longshore-validate-'));
  try {
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', `docker-archive:${c.file}`, `oci:${join(out, 'layout')}:copied`], opts);
    const entries = JSON.parse((await run('tar', ['-xOf', c.file, 'manifest.json'])).toString('utf8')) as DockerManifestEntry[];
    if (entries.length !== 1) throw new Error(`manifest.json has ${entries.length} entries`);
    const entry = entries[0]!;
    if (JSON.stringify(entry.RepoTags) !== JSON.stringify([c.repoTag]))
      throw new Error(`RepoTags ${JSON.stringify(entry.RepoTags)} != ${c.repoTag}`);
    const layers = (JSON.parse(c.manifest.raw) as { layers: { digest: string; mediaType: string }[] }).layers;
    if (entry.Layers.length !== layers.length) throw new Error(`${entry.Layers.length} layers in archive, ${layers.length} in registry`);
    for (const [i, layer] of layers.entries()) {
      // Extracted to a file: GNU tar recognises gzip/zstd by magic bytes in a file, not on a pipe.
      const layerFile = join(out, `layer-${i}`);
      await run('sh', ['-c', `tar -xOf "$1" "$2" > "$3"`, 'sh', c.file, entry.Layers[i]!, layerFile]);
      const ours = tarListing(await runText('tar', ['-tvf', layerFile]));
      const theirs = await registryLayerListing(c.storageDir, layer.digest, layer.mediaType);
      if (JSON.stringify(ours) !== JSON.stringify(theirs))
        throw new Error(`layer ${i + 1} lists differently:\n${ours.join('\n')}\n---\n${theirs.join('\n')}`);
    }
    return { inspect, entries };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

export async function fileBytes(path: string): Promise<Buffer> {
  return readFile(path);
}
