// End to end in Chromium, Firefox and WebKit (tests/helpers/e2e.ts): open the page, type a name,
// press Pull, catch the download and judge the file with skopeo and GNU tar against the
// registry's truth. One set of scenarios, run once per engine.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { SEL } from '../helpers/app-page.ts';
import { randomUUID } from 'node:crypto';
import { startAppServer } from '../helpers/app-server.ts';
import { startSlowProxy, type SlowProxy } from '../helpers/slow-proxy.ts';
import { validateDockerArchive } from '../helpers/validate.ts';
import { podmanLoad } from '../helpers/validate-oci.ts';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import { cacheContents } from '../helpers/idb-cache.ts';
import { runText } from '../helpers/command.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
let slow: SlowProxy;

beforeAll(async () => {
  slow = await startSlowProxy(env.anon.url);
  server = await startAppServer([env.anon.host, env.token.host, env.basic.host, slow.host], {
    mirrors: { 'docker.io': env.anon.url },
    tokenRealms: [env.tokenServer.realm],
  });
});

afterAll(async () => {
  await server?.close();
  await slow?.close();
});

async function expectAttr(page: E2EPage, selector: string, name: string, value: string, timeout = 10_000): Promise<void> {
  await expect.poll(() => page.attr(selector, name), { timeout }).toBe(value);
}

/**
 * `userAgent` (Chromium only: the other drivers cannot set one) marks this page's requests in the
 * shared servers' logs (the proxy passes it on), so counts leave out other test files' pulls.
 */
async function openApp(engine: EngineHandle, userAgent?: string): Promise<E2EPage> {
  const page = await engine.open(server.url, userAgent ? { userAgent } : {});
  await page.waitFor(SEL.name);
  // These tests take the download the Download button offers when the pull ends (the streamed
  // paths are tests/e2e/save.test.ts).
  await page.select(SEL.saveTo, 'blob');
  return page;
}

async function pullAndDownload(page: E2EPage, name: string, expectedFile: string): Promise<string> {
  await page.fill(SEL.name, name);
  await page.click(SEL.pull);
  const hit = await page.waitForAny([SEL.download, SEL.error], 60_000);
  if (hit === SEL.error) throw new Error(`pull failed in the page (${page.engine}): ${await page.text(SEL.error)}`);
  const download = await page.downloadBy(SEL.download);
  expect(download.name).toBe(expectedFile);
  return download.path;
}

/** GNU tar: a legacy archive has one layer.tar per layer, each hashing (sha256sum) to its diff_id, in order. */
async function expectLayerTars(file: string, diffIds: string[]): Promise<void> {
  const manifest = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as { Layers: string[] }[];
  expect(manifest[0]!.Layers).toHaveLength(diffIds.length);
  for (const [i, path] of manifest[0]!.Layers.entries()) {
    const hash = (await runText('sh', ['-c', 'tar -xOf "$1" "$2" | sha256sum', 'sh', file, path])).split(' ')[0];
    expect(`sha256:${hash}`).toBe(diffIds[i]);
  }
}

/** Every key of the page's blob cache (IndexedDB 'longshore', store 'blobs'). */
function cacheKeys(page: E2EPage): Promise<string[]> {
  return page.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const open = indexedDB.open('longshore');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction('blobs', 'readonly');
          const req = tx.objectStore('blobs').getAllKeys();
          req.onsuccess = () => resolve(req.result.map(String));
          req.onerror = () => reject(req.error);
        };
      }),
  );
}

forEachEngine((engine) => {
  describe('the browser app', () => {
    it('pulls a Docker v2s2 image through the docker.io mirror and gives a tar skopeo accepts', async () => {
      const page = await openApp(engine);
      const file = await pullAndDownload(page, 'test/v2s2:latest', 'test_v2s2_latest.tar');
      const f = env.fixtures.v2s2;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: 'test/v2s2:latest',
      });
      await expectAttr(page, SEL.status, 'data-status', 'ready');
      const layers = await page.count('table.layers tbody tr');
      expect(layers).toBe((JSON.parse(f.manifest.raw) as { layers: unknown[] }).layers.length);
      await engine.finish(page);
    });

    it('offers the real platforms of an index and pulls the chosen arm64 image', async () => {
      const page = await openApp(engine);
      const name = `${env.anon.host}/test/multi:latest`;
      await page.fill(SEL.name, name);
      await expect
        .poll(() => page.texts(`${SEL.platform} option`), { timeout: 20_000 })
        .toEqual(['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
      await page.select(SEL.platform, 'linux/arm64');
      await page.click(SEL.pull);
      await page.waitFor(SEL.download, { timeout: 45_000 });
      const { path: file } = await page.downloadBy(SEL.download);
      const child = env.fixtures.multi.children!.find((c) => c.platform.architecture === 'arm64')!;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: child.manifest,
        config: child.config,
        repoTag: `${name}`,
      });
      const config = JSON.parse(
        await runText('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `docker-archive:${file}`], { env: env.skopeoEnv }),
      ) as { architecture: string };
      expect(config.architecture).toBe('arm64');
      await engine.finish(page);
    });

    it('pulls from a bearer-token registry with a cross-origin realm and redirected blobs, never leaking Authorization', async () => {
      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      const tokenMark = await requestLogMark(env.tokenServer.requestLogUrl);
      // Other test files pull the same blobs meanwhile: where the engine can mark its requests,
      // count only this page's.
      const agent = engine.name === 'chromium' ? `longshore-e2e-${randomUUID()}` : undefined;
      const page = await openApp(engine, agent);
      const name = `${env.token.host}/test/oci:latest`;
      const file = await pullAndDownload(page, name, `127.0.0.1_${env.token.host.split(':')[1]}_test_oci_latest.tar`);
      const f = env.fixtures.oci;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
      const log = (
        await readRequestLog<{ seq: number; url: string; headers: Record<string, string> }>(env.staticServer.requestLogUrl, mark)
      ).filter((r) => agent === undefined || r.headers['user-agent'] === agent);
      const layerHexes = (JSON.parse(f.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest.slice(7));
      for (const hex of layerHexes)
        expect(
          log.some((r) => r.url.includes(hex)),
          `blob ${hex} fetched via redirect`,
        ).toBe(true);
      expect(log.filter((r) => 'authorization' in r.headers)).toEqual([]);
      // One token for the name's look-up and one for the pull; the layer workers are handed the
      // pull's token with their jobs instead of each asking the realm again.
      expect(layerHexes.length).toBeGreaterThan(1);
      const tokens = (await readRequestLog<{ seq: number; userAgent: string | null }>(env.tokenServer.requestLogUrl, tokenMark)).filter(
        (t) => agent === undefined || t.userAgent === agent,
      );
      expect(tokens.length).toBeGreaterThan(0);
      // Counted only where the page's requests are told apart from other files' (Chromium).
      if (agent) expect(tokens.length).toBeLessThanOrEqual(2);
      await engine.finish(page);
    });

    it('pulls from a basic-auth registry with credentials typed into the page', async () => {
      const page = await openApp(engine);
      const name = `${env.basic.host}/test/plain:latest`;
      // The sign-in fields are per registry: they appear for the registry the name reaches.
      await page.fill(SEL.name, name);
      await page.click(SEL.signIn);
      await page.fill(SEL.username, env.basic.credentials.username);
      await page.fill(SEL.password, env.basic.credentials.password);
      const file = await pullAndDownload(page, name, `127.0.0.1_${env.basic.host.split(':')[1]}_test_plain_latest.tar`);
      const f = env.fixtures.plain;
      await validateDockerArchive({
        file,
        storageDir: env.storageDir,
        skopeoEnv: env.skopeoEnv,
        manifest: f.manifest,
        config: f.config,
        repoTag: name,
      });
      await engine.finish(page);
    });

    it('puts several images in one archive, shared blobs once (crane pull IMAGE… TARBALL)', async () => {
      const page = await openApp(engine);
      await page.select(SEL.format, 'legacy');
      const a = `${env.anon.host}/test/oci:v1`;
      const b = `${env.anon.host}/test/oci:latest`;
      const file = await pullAndDownload(page, `${a} ${b}`, `127.0.0.1_${env.anon.host.split(':')[1]}_test_oci_v1+1.tar`);
      const entries = JSON.parse(await runText('tar', ['-xOf', file, 'manifest.json'])) as {
        RepoTags: string[];
        Config: string;
        Layers: string[];
      }[];
      expect(entries.map((e) => e.RepoTags)).toEqual([[a], [b]]);
      for (const [name, truth] of [
        [a, env.fixtures.ociV1],
        [b, env.fixtures.oci],
      ] as const) {
        const config = await runText('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `docker-archive:${file}:${name}`], {
          env: env.skopeoEnv,
        });
        expect(config).toBe(truth.config.raw);
      }
      const names = (await runText('tar', ['-tf', file])).trim().split('\n');
      expect(new Set(names).size).toBe(names.length);
      // v1 and latest share their base layer: written once.
      const sharedDir = entries[0]!.Layers[0]!;
      expect(entries[1]!.Layers).toContain(sharedDir);
      await engine.finish(page);
    });

    it('the default docker format keeps the image digest and podman loads it under the pulled name', async () => {
      const page = await openApp(engine);
      const name = `${env.anon.host}/test/oci:latest`;
      const file = await pullAndDownload(page, name, `127.0.0.1_${env.anon.host.split(':')[1]}_test_oci_latest.tar`);
      const f = env.fixtures.oci;
      expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
        f.manifest.raw,
      );
      const { images } = await podmanLoad(file);
      expect(images).toHaveLength(1);
      expect(`sha256:${images[0]!.Id}`).toBe(f.config.digest);
      expect(images[0]!.Names).toContain(name);
      await engine.finish(page);
    });

    it('oci with "All platforms" keeps the whole index byte-exact', async () => {
      const page = await openApp(engine);
      await page.select(SEL.format, 'oci');
      await page.setChecked(SEL.allPlatforms, true);
      const name = `${env.anon.host}/test/multi:latest`;
      const file = await pullAndDownload(page, name, `127.0.0.1_${env.anon.host.split(':')[1]}_test_multi_latest.tar`);
      expect(await runText('skopeo', ['--insecure-policy', 'inspect', '--raw', `oci-archive:${file}`], { env: env.skopeoEnv })).toBe(
        env.fixtures.multi.manifest.raw,
      );
      const out = join(engine.dir, 'multi-all');
      await runText(
        'skopeo',
        ['--insecure-policy', 'copy', '--quiet', '--all', '--preserve-digests', `oci-archive:${file}`, `oci:${out}:all`],
        { env: env.skopeoEnv },
      );
      // skopeo re-verified every blob while copying; each child (attestation included) is there byte-exact.
      for (const child of env.fixtures.multi.children!) {
        expect(await readFile(join(out, 'blobs/sha256', child.manifest.digest.slice(7)), 'utf8')).toBe(child.manifest.raw);
      }
      await engine.finish(page);
    });

    it('legacy: layer.tar files match the diff_ids, skopeo reads the archive, and only the uncompressed layers are cached', async () => {
      const page = await openApp(engine);
      await page.select(SEL.format, 'legacy');
      const file = await pullAndDownload(page, 'test/v2s2:latest', 'test_v2s2_latest.tar');
      const f = env.fixtures.v2s2;
      const diffIds = (JSON.parse(f.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
      const layerDigests = (JSON.parse(f.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
      // skopeo reads it as a docker archive and finds the registry's config byte for byte.
      const config = await runText('skopeo', ['--insecure-policy', 'inspect', '--config', '--raw', `docker-archive:${file}`], {
        env: env.skopeoEnv,
      });
      expect(config).toBe(f.config.raw);
      await expectLayerTars(file, diffIds);
      // The cache keeps what this format needs: the diff_ids, not the compressed blobs as well.
      const keys = await cacheKeys(page);
      for (const d of diffIds) expect(keys).toContain(`blob:${d}`);
      for (const d of layerDigests) expect(keys).not.toContain(`blob:${d}`);
      await engine.finish(page);
    });

    it('legacy after a docker pull decompresses the cached layers: no layer is fetched again', async () => {
      const agent = engine.name === 'chromium' ? `longshore-e2e-${randomUUID()}` : undefined;
      const page = await openApp(engine, agent);
      const name = `${env.token.host}/test/oci:latest`;
      const fileName = `127.0.0.1_${env.token.host.split(':')[1]}_test_oci_latest.tar`;
      const first = await requestLogMark(env.staticServer.requestLogUrl);
      await pullAndDownload(page, name, fileName);
      const f = env.fixtures.oci;
      const diffIds = (JSON.parse(f.config.raw) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
      const layerHexes = (JSON.parse(f.manifest.raw) as { layers: { digest: string }[] }).layers.map((l) => l.digest.slice(7));
      // The marker finds this page's requests: the first pull's layer fetches carry it.
      const firstLog = (
        await readRequestLog<{ seq: number; url: string; headers: Record<string, string> }>(env.staticServer.requestLogUrl, first)
      ).filter((r) => agent === undefined || r.headers['user-agent'] === agent);
      for (const hex of layerHexes)
        expect(
          firstLog.some((r) => r.url.includes(hex)),
          `layer ${hex} fetched by the first pull`,
        ).toBe(true);
      const mark = await requestLogMark(env.staticServer.requestLogUrl);
      await page.select(SEL.format, 'legacy');
      const file = await pullAndDownload(page, name, fileName);
      const log = (
        await readRequestLog<{ seq: number; url: string; headers: Record<string, string> }>(env.staticServer.requestLogUrl, mark)
      ).filter((r) => agent === undefined || r.headers['user-agent'] === agent);
      // Counted only where the page's requests are told apart from other files' (Chromium).
      if (agent)
        for (const hex of layerHexes)
          expect(
            log.filter((r) => r.url.includes(hex)),
            `layer ${hex} fetched again`,
          ).toEqual([]);
      await expectLayerTars(file, diffIds);
      for (const d of diffIds) expect(await cacheKeys(page)).toContain(`blob:${d}`);
      await engine.finish(page);
    });

    it('says clearly when an image does not exist and offers no download', async () => {
      const page = await openApp(engine);
      await page.fill(SEL.name, `${env.anon.host}/test/v2s2:does-not-exist`);
      await page.click(SEL.pull);
      await page.waitFor(SEL.error);
      await expectAttr(page, SEL.error, 'data-code', 'MANIFEST_UNKNOWN');
      expect(await page.text(SEL.error)).toMatch(/does-not-exist/);
      expect(await page.text(SEL.error)).toMatch(/Check the spelling of the tag/);
      await expectAttr(page, SEL.status, 'data-status', 'failed');
      expect(await page.count(SEL.download)).toBe(0);
      await engine.finish(page);
    });

    it('rejects a malformed name inline before any request', async () => {
      const page = await openApp(engine);
      await page.fill(SEL.name, 'Alpine:latest');
      await expect.poll(() => page.text(SEL.nameHelp)).toMatch(/lowercase/);
      await expect.poll(() => page.isDisabled(SEL.pull)).toBe(true);
      await engine.finish(page);
    });

    it('cancel mid-download returns to a quiet state, offers no download and caches no partial blob', async () => {
      const page = await openApp(engine);
      await page.fill(SEL.name, `${slow.host}/test/v2s2:latest`);
      await page.click(SEL.pull);
      await expectAttr(page, SEL.status, 'data-status', 'downloading', 20_000);
      await page.click(SEL.cancel);
      await expectAttr(page, SEL.status, 'data-status', 'cancelled');
      expect(await page.count(SEL.download)).toBe(0);
      expect(await page.count(SEL.error)).toBe(0);
      await expect.poll(() => page.isDisabled(SEL.pull)).toBe(false);
      // The largest layer (drip-fed) must not be in the cache, whole or partial.
      const layers = (JSON.parse(env.fixtures.v2s2.manifest.raw) as { layers: { digest: string; size: number }[] }).layers;
      const largest = layers.reduce((a, b) => (b.size > a.size ? b : a));
      // Wait for the worker's clean-up (a condition, not a sleep): no segment left without a record
      // (a cancelled layer's bytes are kept under its unfinished download's `part:` record).
      await expect.poll(async () => (await cacheContents(page)).orphans, { timeout: 20_000 }).toEqual([]);
      const keys = await cacheKeys(page);
      expect(keys).not.toContain(`blob:${largest.digest}`);
      await engine.finish(page);
    });
  });
});
