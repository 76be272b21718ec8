// The legacy docker-save sink, driven from Node: pull into memory, plan, assemble, and let skopeo
// and GNU tar judge the file. Same image twice → the same bytes.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseReference } from '../../src/core/reference.ts';
import { RegistryClient } from '../../src/core/registry/client.ts';
import { RemoteSource } from '../../src/core/image/remote.ts';
import { pull } from '../../src/core/pull.ts';
import { MemoryBlobStore } from '../../src/core/store/blob-store.ts';
import { legacyFormat } from '../../src/core/formats/legacy.ts';
import { assembleStream } from '../../src/core/formats/assemble.ts';
import { parsePlatform } from '../../src/core/image/platform.ts';
import { validateDockerArchive } from '../helpers/validate.ts';
import { fixtureRef } from '../helpers/harness.ts';
import { runText } from '../helpers/command.ts';
import type { FixtureName } from '../helpers/fixtures.ts';

const env = inject('registryEnv');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'longshore-legacy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeLegacy(name: string, platform?: string): Promise<{ file: string; bytes: Buffer }> {
  const ref = parseReference(name);
  const store = new MemoryBlobStore();
  const source = new RemoteSource(new RegistryClient({ transport: { fetch: globalThis.fetch } }));
  const { image } = await pull(source, ref, { store, uncompressed: true, ...(platform ? { platform: parsePlatform(platform) } : {}) });
  const plan = await legacyFormat.plan([{ image, reference: ref }], { size: async (k) => (await store.size(k))! });
  const bytes = Buffer.from(await new Response(assembleStream(plan, store)).arrayBuffer());
  expect(bytes.length).toBe(plan.size);
  const file = join(
    dir,
    `${createHash('sha256')
      .update(name + (platform ?? ''))
      .digest('hex')
      .slice(0, 8)}.tar`,
  );
  await writeFile(file, bytes);
  return { file, bytes };
}

describe('legacy docker-save format', () => {
  it.each<FixtureName>(['v2s2', 'oci', 'plain'])('%s: skopeo reads and copies it; layers list like the registry blobs', async (fixture) => {
    const name = fixtureRef(env, env.anon, fixture);
    const { file } = await writeLegacy(name);
    const f = env.fixtures[fixture];
    await validateDockerArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      manifest: f.manifest,
      config: f.config,
      repoTag: name,
    });
  });

  it('is deterministic: the same image gives the same bytes twice', async () => {
    const name = fixtureRef(env, env.anon, 'v2s2');
    const a = await writeLegacy(name);
    const b = await writeLegacy(name);
    expect(a.bytes.equals(b.bytes)).toBe(true);
  });

  it('lays entries out as docker save does: sorted, VERSION 1.0, json with id/parent, repositories', async () => {
    const name = fixtureRef(env, env.anon, 'v2s2');
    const { file } = await writeLegacy(name);
    const names = (await runText('tar', ['-tf', file])).trim().split('\n');
    expect(names).toEqual([...names].sort());
    const configHex = env.fixtures.v2s2.config.digest.slice(7);
    expect(names).toContain(`${configHex}.json`);
    expect(names.at(-2)).toBe('manifest.json');
    expect(names.at(-1)).toBe('repositories');
    const manifest = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
    const layerDirs = manifest[0]!.Layers.map((l) => l.replace('/layer.tar', ''));
    let parent: string | undefined;
    for (const id of layerDirs) {
      expect(await runText('tar', ['-xOf', file, `${id}/VERSION`])).toBe('1.0');
      const json = JSON.parse(await runText('tar', ['-xOf', file, `${id}/json`])) as { id: string; parent?: string };
      expect(json.id).toBe(id);
      expect(json.parent).toBe(parent);
      parent = id;
    }
    const repositories = JSON.parse(await runText('tar', ['-xOf', file, 'repositories'])) as Record<string, Record<string, string>>;
    expect(repositories).toEqual({ [name.slice(0, name.lastIndexOf(':'))]: { latest: parent } });
    const verbose = await runText('tar', ['--utc', '-tvf', file]);
    for (const line of verbose.trim().split('\n')) expect(line).toMatch(/ 0\/0 .* 1970-01-01 /);
  });

  it('pulls the chosen platform of a Docker manifest list', async () => {
    const name = fixtureRef(env, env.anon, 'list');
    const { file } = await writeLegacy(name, 'linux/arm64');
    const child = env.fixtures.list.children!.find((c) => c.platform.architecture === 'arm64')!;
    await validateDockerArchive({
      file,
      storageDir: env.storageDir,
      skopeoEnv: env.skopeoEnv,
      manifest: child.manifest,
      config: child.config,
      repoTag: name,
    });
  });
});
