// Registries as people meet them, through the page in Chromium, Firefox and WebKit
// (tests/helpers/e2e.ts): sign-ins per registry (kept in the tab, or remembered on this device by
// choice), and a cancelled download that leaves no segment behind. Judged at the registries:
// request logs, skopeo, IndexedDB's own contents.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { forEachEngine, type E2EPage, type EngineHandle } from '../helpers/e2e.ts';
import { SEL } from '../helpers/app-page.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { startTamperProxy, type TamperProxy } from '../helpers/tamper-proxy.ts';
import { readRequestLog, requestLogMark } from '../helpers/harness.ts';
import { copyImage, copyManifest, pushImage, pushManyTags } from '../helpers/registry-api.ts';
import { cacheContents } from '../helpers/idb-cache.ts';
import { freePort, run } from '../helpers/command.ts';
import { reproducibleTarOptions } from '../helpers/images.ts';
import { HUB_TOKEN_PATH, type TokenRequestRecord } from '../helpers/token-server.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';

const env = inject('registryEnv');
let server: RunningServer;
/** In front of the token registry, recording every Authorization header it is sent. */
let tokenFront: TamperProxy;
/** In front of the anonymous registry, for failures a healthy registry never has. */
let anonFront: TamperProxy;
/** The token registry with its challenge naming the token server's Docker Hub-like realm. */
let hubFront: TamperProxy;
/** A configured registry host nothing listens on. */
let downHost: string;

beforeAll(async () => {
  tokenFront = await startTamperProxy(env.token.url);
  anonFront = await startTamperProxy(env.anon.url);
  hubFront = await startTamperProxy(env.token.url, { challengeRealm: `${env.tokenServer.origin}${HUB_TOKEN_PATH}` });
  downHost = `127.0.0.1:${await freePort()}`;
  server = await startAppServer([env.anon.host, env.basic.host, tokenFront.host, anonFront.host, hubFront.host, downHost], {
    tokenRealms: [env.tokenServer.realm],
  });
});

afterAll(async () => {
  await server?.close();
  await tokenFront?.close();
  await anonFront?.close();
  await hubFront?.close();
});

async function openApp(engine: EngineHandle): Promise<E2EPage> {
  const page = await engine.open(server.url);
  await page.waitFor(SEL.name);
  // These tests take the download the Download button offers when the pull ends (the streamed
  // paths are tests/e2e/save.test.ts).
  await page.select(SEL.saveTo, 'blob');
  return page;
}

/** Presses Pull and waits for the download button or the error banner; returns the error code, if any. */
async function pullOutcome(page: E2EPage): Promise<string | undefined> {
  await page.click(SEL.pull);
  const hit = await page.waitForAny([SEL.download, SEL.error], 45_000);
  return hit === SEL.error ? ((await page.attr(SEL.error, 'data-code')) ?? 'NO_CODE') : undefined;
}

/** The sign-in fields of one registry (CredentialsPanel). */
const login = (host: string) => {
  const set = `fieldset[data-registry="${host}"]`;
  return {
    user: `${set} input[autocomplete="username"]`,
    password: `${set} input[autocomplete="current-password"]`,
    remember: `${set} label.check input[type="checkbox"]`,
    note: `${set} [role="note"]`,
  };
};

const valueOf = (page: E2EPage, selector: string) =>
  page.evaluate((s: string) => (document.querySelector(s) as HTMLInputElement | HTMLSelectElement).value, selector);

const basicOf = (c: { username: string; password: string }) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;

const MiB = 1024 * 1024;
/** src/browser/idb-store.ts SEGMENT_BYTES: a blob is written to IndexedDB in pieces of this size. */
const SEGMENT = 16 * MiB;

/** A one-file layer tar (GNU tar, reproducible options) of `size` random bytes. */
async function randomLayer(size: number): Promise<Uint8Array> {
  const dir = await mkdtemp(join(tmpdir(), 'longshore-layer-'));
  try {
    await writeFile(join(dir, 'random.bin'), randomBytes(size));
    return new Uint8Array(await run('tar', ['-c', ...reproducibleTarOptions(), '-f', '-', '-C', dir, 'random.bin']));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One repository of 2,500 tags (and an index under `multi`) for every engine: pushing it is the slow part. */
let tagged: Promise<{ repo: string; tags: string[]; indexDigest: string }> | undefined;
function manyTags() {
  tagged ??= (async () => {
    const repo = `test/tags-${randomUUID().slice(0, 8)}`;
    const { tags } = await pushManyTags(env.anon.url, repo, 2500);
    const indexDigest = await copyManifest(env.anon.url, env.fixtures.multi.repository, env.fixtures.multi.tag, repo, 'multi');
    return { repo, tags, indexDigest };
  })();
  return tagged;
}

forEachEngine((engine) => {
  describe('sign-in per registry', () => {
    it('a pull across two registries asks per registry and sends each pair only to its own registry and realm', async () => {
      // A private repository only this test touches (the registries share storage), so the token
      // server's log can be filtered to this test's requests by scope.
      const repo = `private/e2e-${randomUUID().slice(0, 8)}`;
      await copyImage(env.anon.url, env.fixtures.private.repository, 'latest', repo, 'latest');
      const basicName = `${env.basic.host}/${env.fixtures.plain.path}`;
      const tokenName = `${tokenFront.host}/${repo}:latest`;
      const page = await openApp(engine);
      await page.fill(SEL.name, `${basicName} ${tokenName}`);
      await page.click(SEL.signIn);
      // One pair per registry, each labelled with its registry.
      for (const host of [env.basic.host, tokenFront.host]) {
        const id = await page.attr(login(host).user, 'id');
        expect(await page.text(`label[for="${id}"]`)).toBe(`User name for ${host}`);
      }
      await page.fill(login(env.basic.host).user, env.basic.credentials.username);
      await page.fill(login(env.basic.host).password, env.basic.credentials.password);
      await page.fill(login(tokenFront.host).user, env.token.credentials.username);
      await page.fill(login(tokenFront.host).password, env.token.credentials.password);
      const mark = await requestLogMark(env.tokenServer.requestLogUrl);
      const seen = tokenFront.requests.length;
      expect(await pullOutcome(page)).toBeUndefined();

      // The token registry was only ever sent Bearer tokens: never bob's (nor alice's) Basic.
      const sentToToken = tokenFront.requests.slice(seen).filter((r) => r.path.includes(repo));
      expect(sentToToken.length).toBeGreaterThan(0);
      for (const r of sentToToken) if (r.authorization) expect(r.authorization).toMatch(/^Bearer /);
      // Its realm got alice's pair, for this repository, and nothing of bob's.
      const tokens = (await readRequestLog<TokenRequestRecord>(env.tokenServer.requestLogUrl, mark)).filter((t) =>
        (t.query['scope'] ?? []).some((s) => s.includes(repo)),
      );
      expect(tokens.length).toBeGreaterThan(0);
      for (const t of tokens) expect([t.authorizationScheme, t.username, t.status]).toEqual(['Basic', env.token.credentials.username, 200]);
      expect(tokenFront.requests.some((r) => r.authorization === basicOf(env.basic.credentials))).toBe(false);
    });

    it('htpasswd: a wrong then right password; kept in the tab only, unless remembered; forgotten one by one', async () => {
      const page = await openApp(engine);
      const name = `${env.basic.host}/${env.fixtures.plain.path}`;
      const { user, password, remember, note } = login(env.basic.host);
      const signIn = async () => {
        await page.waitFor(SEL.name);
        await page.fill(SEL.name, name);
        // A reload offers the default save path again; these pulls end at the Download button.
        await page.select(SEL.saveTo, 'blob');
        await page.click(SEL.signIn);
        await page.waitFor(user);
      };
      await signIn();
      await page.fill(user, env.basic.credentials.username);
      await page.fill(password, 'not-the-password');
      expect(await pullOutcome(page)).toBe('UNAUTHORIZED');
      await page.fill(password, env.basic.credentials.password);
      expect(await pullOutcome(page)).toBeUndefined();

      // Not remembered: a reload forgets it.
      await page.reload();
      await signIn();
      expect(await valueOf(page, user)).toBe('');
      expect(await page.count('[data-testid="remembered"]')).toBe(0);

      await page.fill(user, env.basic.credentials.username);
      await page.fill(password, env.basic.credentials.password);
      await page.setChecked(remember, true);
      await expect.poll(() => page.text(note)).toMatch(/unencrypted/);
      await page.reload();
      await signIn();
      expect(await valueOf(page, user)).toBe(env.basic.credentials.username);
      expect(await valueOf(page, password)).toBe(env.basic.credentials.password);
      expect(await page.text('[data-testid="remembered"]')).toContain(env.basic.host);
      expect(await pullOutcome(page)).toBeUndefined();

      const forget = '[data-testid="remembered"] li button';
      expect(await page.text(forget)).toBe(`Forget ${env.basic.host}`);
      await page.click(forget);
      expect(await valueOf(page, user)).toBe('');
      await page.reload();
      await signIn();
      expect(await valueOf(page, user)).toBe('');
      expect(await page.count('[data-testid="remembered"]')).toBe(0);
      expect(await pullOutcome(page)).toBe('UNAUTHORIZED');
    });
  });

  describe('the cache', () => {
    it('cancel mid-layer, a layer larger than two segments: no segment is left without its record', async () => {
      const repo = `test/big-${randomUUID().slice(0, 8)}`;
      const image = await pushImage(env.anon.url, repo, 'latest', [await randomLayer(2 * SEGMENT + 8 * MiB)]);
      // The layer stops after one whole segment and a half: the store has written a segment (or, where
      // the layer worker stages in OPFS, part of its file) and waits.
      anonFront.rules.stallBlob = { digest: image.layers[0]!, afterBytes: SEGMENT + SEGMENT / 2 };
      const page = await openApp(engine);
      await page.fill(SEL.name, `${anonFront.host}/${repo}:latest`);
      await page.click(SEL.pull);
      await expect
        .poll(async () => (await cacheContents(page)).keys.filter((k) => k.startsWith('seg:') || k.startsWith('file:')).length, {
          timeout: 45_000,
        })
        .toBeGreaterThan(0);
      expect((await cacheContents(page)).keys).not.toContain(`blob:${image.layers[0]}`);
      expect(await page.text(SEL.cancel)).toBe('Cancel');
      await page.click(SEL.cancel);
      await expect.poll(() => page.attr(SEL.status, 'data-status')).toBe('cancelled');
      // The worker deletes the segments it wrote once its stream fails; wait for that, bounded.
      await expect.poll(async () => (await cacheContents(page)).orphans, { timeout: 20_000 }).toEqual([]);
      const { keys } = await cacheContents(page);
      expect(keys).not.toContain(`blob:${image.layers[0]}`);
      // What arrived is kept as an unfinished download (a `part:` record owning every segment left),
      // so pulling again continues from there (README, "Resume, retries and the cache").
      const segments = keys.filter((k) => k.startsWith('seg:') || k.startsWith('file:'));
      if (segments.length) expect(keys).toContain(`part:${image.layers[0]}`);
    });
  });

  describe('errors people understand', () => {
    async function failure(page: E2EPage, name: string): Promise<{ code: string | null; text: string }> {
      await page.fill(SEL.name, name);
      expect(await pullOutcome(page)).toBeDefined();
      return { code: await page.attr(SEL.error, 'data-code'), text: (await page.text(SEL.error)) ?? '' };
    }

    it('a missing repository on a Docker Hub-like registry, an HTML 502, a registry that is down, a host the proxy refuses', async () => {
      const page = await openApp(engine);
      const missing = await failure(page, `${hubFront.host}/library/no-such-image:latest`);
      expect(missing.code).toBe('NOT_FOUND_OR_PRIVATE');
      expect(missing.text).toMatch(/not found, or private/);
      expect(missing.text).toMatch(/sign in/);

      anonFront.rules.failManifests = { status: 502, count: 1_000, html: true };
      try {
        const page502 = await failure(page, `${anonFront.host}/${env.fixtures.oci.path}`);
        expect(page502.code).toBe('ERROR_PAGE');
        expect(page502.text).toContain('502 Bad Gateway');
        expect(page502.text).not.toMatch(/<\/?[a-z]/i);
      } finally {
        anonFront.rules.failManifests = undefined;
      }

      const down = await failure(page, `${downHost}/test/oci:latest`);
      expect(down.code).toBe('PROXY_UNREACHABLE');
      expect(down.text).toContain(`${downHost} did not answer`);

      const refused = await failure(page, `${env.token.host}/test/oci:latest`);
      expect(refused.code).toBe('PROXY_DENIED');
      expect(refused.text).toContain(`LONGSHORE_REGISTRIES=http://${env.token.host}`);
    });
  });

  // One engine: the retry and its countdown are the core's and plain page text, nothing an engine
  // does differently (the suite's time goes to what differs: saving, storage, errors).
  if (engine.name === 'chromium')
    describe('rate limits', () => {
      it('429 twice with Retry-After: the page counts down, then completes by itself', async () => {
        const page = await openApp(engine);
        await page.fill(SEL.name, `${anonFront.host}/${env.fixtures.oci.path}`);
        // Let the name's look-up pass first: the two 429s are for the pull.
        await expect.poll(() => page.text(SEL.nameHelp), { timeout: 20_000 }).toMatch(/single image|multi-platform/);
        const failed = anonFront.requests.filter((r) => r.action === 'fail').length;
        anonFront.rules.failManifests = { status: 429, count: 2, retryAfter: '2' };
        try {
          await page.click(SEL.pull);
          const wait = '[data-testid="rate-wait"]';
          await page.waitFor(wait, { timeout: 20_000 });
          expect((await page.text(wait))?.replace(/\s+/g, ' ')).toMatch(
            new RegExp(`${anonFront.host} is rate-limiting this pull: retrying in [12] s`),
          );
          await page.waitFor(SEL.download, { timeout: 45_000 });
          expect(await page.count(wait)).toBe(0);
          expect(anonFront.requests.filter((r) => r.action === 'fail').length - failed).toBe(2);
        } finally {
          anonFront.rules.failManifests = undefined;
        }
      });
    });

  describe('deep links', () => {
    it('a link fills the same pull without starting it; a click pulls it; Back returns to the previous name', async () => {
      const name = `${env.anon.host}/${env.fixtures.multi.path}`;
      const page = await openApp(engine);
      const link = new URL(`/?${new URLSearchParams({ image: name, platform: 'linux/arm64', format: 'oci' })}`, server.url).toString();
      await page.goto(link);
      await page.waitFor(SEL.name);
      await page.select(SEL.saveTo, 'blob');
      await expect.poll(() => valueOf(page, SEL.name)).toBe(name);
      expect(await valueOf(page, SEL.format)).toBe('oci');
      // The look-up runs (to offer the index's platforms) and keeps the linked one chosen.
      await expect.poll(() => page.text(SEL.nameHelp), { timeout: 20_000 }).toMatch(/multi-platform index/);
      expect(await valueOf(page, SEL.platform)).toBe('linux/arm64');
      // Nothing was pulled: no download, an idle page, an empty cache.
      expect(await page.attr(SEL.status, 'data-status')).toBe('idle');
      expect(await page.count(SEL.download)).toBe(0);
      expect((await cacheContents(page)).keys.filter((k) => k.startsWith('blob:'))).toEqual([]);

      expect(await pullOutcome(page)).toBeUndefined();
      const child = env.fixtures.multi.children!.find((c) => c.platform.architecture === 'arm64')!;
      expect(await page.text('[data-testid="result"]')).toContain('linux/arm64');
      const childLayers = (JSON.parse(child.manifest.raw) as { layers: { digest: string }[] }).layers;
      for (const l of childLayers) expect((await cacheContents(page)).keys).toContain(`blob:${l.digest}`);

      // A new name is a new history entry; Back restores the linked pull.
      const other = `${env.anon.host}/${env.fixtures.oci.path}`;
      const param = (key: string) => page.evaluate((k: string) => new URL(location.href).searchParams.get(k), key);
      await page.fill(SEL.name, other);
      await expect.poll(() => param('image')).toBe(other);
      // The browser's Back and Forward (History API, HTML §7.4.2: the same traversal the buttons do).
      await page.evaluate(() => history.back());
      await expect.poll(() => valueOf(page, SEL.name)).toBe(name);
      expect(await param('platform')).toBe('linux/arm64');
      await page.evaluate(() => history.forward());
      await expect.poll(() => valueOf(page, SEL.name)).toBe(other);
    });
  });

  describe('tags', () => {
    it('browses 2,500 tags (paged by n and Link), filters as you type, picks one: HEAD digest and platforms before pulling', async () => {
      const { repo, tags, indexDigest } = await manyTags();
      const seen = anonFront.requests.length;
      anonFront.rules.paginateTags = { maxPage: 1000 };
      try {
        const page = await openApp(engine);
        await page.fill(SEL.name, `${anonFront.host}/${repo}`);
        await page.click('[data-testid="browse-tags"]');
        const counted = '[data-testid="tag-count"]';
        const buttons = '[data-testid="tag-list"] li button';
        await expect.poll(() => page.text(counted), { timeout: 30_000 }).toMatch(`${(tags.length + 1).toLocaleString('en')} tags`);
        expect((await page.text(counted))?.trim()).toBe(`${(tags.length + 1).toLocaleString('en')} tags`);
        expect(
          anonFront.requests.slice(seen).filter((r) => r.path.startsWith(`/v2/${repo}/tags/list`) && r.path.includes('last=')),
        ).toHaveLength(2);
        expect(await page.count(buttons)).toBe(200);

        await page.fill('#tag-filter', 'v12');
        await expect
          .poll(async () => (await page.text(counted))?.trim())
          .toBe(`100 of ${(tags.length + 1).toLocaleString('en')} tags match`);
        expect(await page.text(buttons)).toBe('v1200');
        await page.fill('#tag-filter', 'mul');
        await expect.poll(() => page.texts(buttons)).toContain('multi');
        const at = (await page.texts(buttons)).indexOf('multi');
        await page.click(`[data-testid="tag-list"] li:nth-child(${at + 1}) button`);

        const name = `${anonFront.host}/${repo}:multi`;
        expect(await valueOf(page, SEL.name)).toBe(name);
        await expect.poll(() => page.attr('[data-testid="tag-digest"]', 'data-digest'), { timeout: 20_000 }).toBe(indexDigest);
        expect(anonFront.requests.some((r) => r.method === 'HEAD' && r.path === `/v2/${repo}/manifests/multi`)).toBe(true);
        await expect
          .poll(async () => (await page.text('[data-testid="tag-picked"]'))?.replace(/\s+/g, ' '), { timeout: 20_000 })
          .toContain('platforms: linux/amd64, linux/arm64, linux/arm/v7');
        expect(await page.attr(SEL.status, 'data-status')).toBe('idle');

        expect(await pullOutcome(page)).toBeUndefined();
        expect(await page.text('[data-testid="result"]')).toContain(`${repo}:multi`);
      } finally {
        anonFront.rules.paginateTags = undefined;
      }
    });
  });
});
