// Judges every archive the page saved, with independent readers only. Every run: GNU tar reads
// the index (manifest.json of `docker save`, or index.json → manifest of an OCI layout) and the
// config, which must be byte-exact, with the right number of layers. Once per format and
// variant, skopeo also copies the archive into an OCI layout, which re-hashes every layer against
// the manifest (OCI) or the config's diff_ids (docker save). A failure makes the run a broken one.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run, runText } from '../helpers/command.ts';
import type { BenchImage } from './image.ts';

export type ArchiveKind = 'docker-archive' | 'oci-archive';

export class VerificationError extends Error {
  override name = 'VerificationError';
}

async function member(file: string, name: string): Promise<Buffer> {
  try {
    return await run('tar', ['-xOf', file, name]);
  } catch {
    throw new VerificationError(`${file} has no member ${name}`);
  }
}

function parse<T>(file: string, name: string, bytes: Buffer): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new VerificationError(`${file}: ${name} is not JSON`);
  }
}

/** What the archive is, from its member names: `docker save` (manifest.json) or an OCI layout only. */
export async function archiveKind(file: string): Promise<ArchiveKind> {
  const names = (await runText('tar', ['-tf', file])).split('\n');
  if (names.includes('manifest.json')) return 'docker-archive';
  if (names.includes('oci-layout') && names.includes('index.json')) return 'oci-archive';
  throw new VerificationError(`${file} holds neither manifest.json nor oci-layout + index.json`);
}

async function checkDockerArchive(file: string, image: BenchImage, configRaw: string): Promise<void> {
  const entries = parse<{ Config: string; Layers: string[] }[]>(file, 'manifest.json', await member(file, 'manifest.json'));
  if (entries.length !== 1) throw new VerificationError(`${file}: manifest.json has ${entries.length} entries, expected 1`);
  const entry = entries[0]!;
  if (entry.Layers.length !== image.layers.length)
    throw new VerificationError(`${file}: ${entry.Layers.length} layers, the image has ${image.layers.length}`);
  const config = (await member(file, entry.Config)).toString('utf8');
  if (config !== configRaw) throw new VerificationError(`${file}: ${entry.Config} differs from the registry's config`);
}

async function checkOciArchive(file: string, image: BenchImage): Promise<void> {
  const index = parse<{ manifests: { digest: string }[] }>(file, 'index.json', await member(file, 'index.json'));
  if (index.manifests.length !== 1)
    throw new VerificationError(`${file}: index.json lists ${index.manifests.length} manifests, expected 1`);
  const name = `blobs/sha256/${index.manifests[0]!.digest.slice(7)}`;
  const manifest = parse<{ config: { digest: string }; layers: { digest: string }[] }>(file, name, await member(file, name));
  if (manifest.config.digest !== image.config.digest)
    throw new VerificationError(`${file}: config ${manifest.config.digest}, the registry's is ${image.config.digest}`);
  const layers = manifest.layers.map((l) => l.digest).join();
  if (layers !== image.layers.map((l) => l.digest).join()) throw new VerificationError(`${file}: layer digests differ from the registry's`);
  await member(file, `blobs/sha256/${image.config.digest.slice(7)}`);
}

export interface VerifyOptions {
  image: BenchImage;
  configRaw: string;
  skopeoEnv: NodeJS.ProcessEnv;
  /** Also copy it with skopeo (reads and hashes every layer). */
  thorough: boolean;
  scratchDir: string;
}

export async function verifyArchive(file: string, o: VerifyOptions): Promise<ArchiveKind> {
  const kind = await archiveKind(file);
  if (kind === 'docker-archive') await checkDockerArchive(file, o.image, o.configRaw);
  else await checkOciArchive(file, o.image);
  if (o.thorough) {
    const out = await mkdtemp(join(o.scratchDir, 'verify-'));
    try {
      await run('skopeo', ['--insecure-policy', 'copy', '--quiet', `${kind}:${file}`, `oci:${join(out, 'layout')}:copied`], {
        env: o.skopeoEnv,
      });
    } catch (err) {
      throw new VerificationError(`${file}: skopeo could not copy it: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }
  return kind;
}
