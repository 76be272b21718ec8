// An image with a few large incompressible layers, built with umoci and pushed with skopeo to the
// anonymous registry (every registry of the harness shares its storage), for tests that need a
// download long enough to break in the middle. Each caller picks its own repository.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pseudoRandomBytes } from './fixtures.ts';
import { OciLayout, skopeoCopy, skopeoInspectRaw } from './images.ts';
import type { HarnessEnv } from './harness.ts';

export interface BigImage {
  /** 'repository:tag' (prefix it with a registry host). */
  path: string;
  manifestRaw: string;
  layers: { digest: string; size: number; mediaType: string }[];
}

/** Layers of `sizes` bytes of pseudo-random data each (gzip by umoci: about the same size compressed). */
export async function pushBigImage(env: HarnessEnv, repository: string, sizes: number[]): Promise<BigImage> {
  const dir = await mkdtemp(join(tmpdir(), 'longshore-big-'));
  try {
    const layout = await OciLayout.create(join(dir, 'layout'));
    await layout.addImage('latest', {
      config: { cmd: ['/bin/true'] },
      layers: sizes.map((size, i) => ({ files: { [`data/${repository.replace(/\W/g, '-')}-${i}.bin`]: pseudoRandomBytes(size, `${repository}:${i}`) } })),
    });
    const path = `${repository}:latest`;
    await skopeoCopy(layout.ref('latest'), `docker://${env.anon.host}/${path}`, { env: env.skopeoEnv, preserveDigests: true });
    const manifestRaw = (await skopeoInspectRaw(`docker://${env.anon.host}/${path}`, { env: env.skopeoEnv })).toString('utf8');
    const layers = (JSON.parse(manifestRaw) as { layers: BigImage['layers'] }).layers;
    return { path, manifestRaw, layers };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
