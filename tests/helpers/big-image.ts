// An image with a few large incompressible layers, built with umoci and pushed with skopeo to the
// anonymous registry (every registry of the harness shares its storage), for tests that need a
// download long enough to break in the middle. Each caller picks its own repository.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pseudoRandomBytes } from './fixtures.ts';
import { OciLayout, skopeoCopy, skopeoInspectConfigRaw, skopeoInspectRaw } from './images.ts';
import type { HarnessEnv } from './harness.ts';

export interface BigImage {
  /** 'repository:tag' (prefix it with a registry host). */
  path: string;
  manifestRaw: string;
  configRaw: string;
  layers: { digest: string; size: number; mediaType: string }[];
}

/**
 * Layers given as a size (that many bytes of pseudo-random data: gzip by umoci leaves them about
 * as big) or as files (path → bytes), in order.
 */
export async function pushBigImage(
  env: HarnessEnv,
  repository: string,
  layers: (number | Record<string, Uint8Array>)[],
): Promise<BigImage> {
  const dir = await mkdtemp(join(tmpdir(), 'longshore-big-'));
  try {
    const layout = await OciLayout.create(join(dir, 'layout'));
    await layout.addImage('latest', {
      config: { cmd: ['/bin/true'] },
      layers: layers.map((layer, i) => ({
        files:
          typeof layer === 'number'
            ? { [`data/${repository.replace(/\W/g, '-')}-${i}.bin`]: pseudoRandomBytes(layer, `${repository}:${i}`) }
            : layer,
      })),
    });
    const path = `${repository}:latest`;
    await skopeoCopy(layout.ref('latest'), `docker://${env.anon.host}/${path}`, { env: env.skopeoEnv, preserveDigests: true });
    const manifestRaw = (await skopeoInspectRaw(`docker://${env.anon.host}/${path}`, { env: env.skopeoEnv })).toString('utf8');
    const configRaw = (await skopeoInspectConfigRaw(`docker://${env.anon.host}/${path}`, { env: env.skopeoEnv })).toString('utf8');
    return { path, manifestRaw, configRaw, layers: (JSON.parse(manifestRaw) as { layers: BigImage['layers'] }).layers };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
