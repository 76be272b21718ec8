// The real IndexedDB blob store, driven directly in Chromium (tests/e2e/pages/store-page.ts bundled
// into a page of the app's origin): put/get/delete/sweep, partial downloads kept across a page
// reload with their hasher state, two tabs sharing one cache (Web Locks), and a full disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser.ts';
import { startAppServer } from '../helpers/app-server.ts';
import { bundleForPage } from '../helpers/page-bundle.ts';
import type { RunningServer } from '../../src/proxy/serve.ts';
import type { StorePageApi } from './pages/store-page.ts';

declare global {
  var longshoreTest: StorePageApi;
}

let browser: Browser;
let server: RunningServer;
let bundle: string;
let dbCount = 0;

beforeAll(async () => {
  [bundle, server, browser] = await Promise.all([
    bundleForPage(resolve(import.meta.dirname, 'pages/store-page.ts')),
    startAppServer([]),
    launchChromium(),
  ]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function openPage(context?: BrowserContext): Promise<Page> {
  const page = await (context ?? (await browser.newContext())).newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.addScriptTag({ content: bundle, type: 'module' });
  await page.waitForFunction(() => globalThis.longshoreTest !== undefined);
  return page;
}

/** Every key of the database `db` (store 'blobs'), read with the raw IndexedDB API. */
function rawKeys(page: Page, db: string): Promise<string[]> {
  return page.evaluate(
    async (name) =>
      (await indexedDB.databases()).some((d) => d.name === name)
        ? new Promise<string[]>((resolveKeys, reject) => {
            const open = indexedDB.open(name);
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const req = open.result.transaction('blobs', 'readonly').objectStore('blobs').getAllKeys();
              req.onsuccess = () => {
                open.result.close();
                resolveKeys(req.result.map(String));
              };
              req.onerror = () => reject(req.error);
            };
          })
        : [],
    db,
  );
}

/** Every segment is referenced by exactly one record, and every record's segments exist. */
async function expectConsistent(page: Page, db: string): Promise<void> {
  const problems = await page.evaluate(async (name) => {
    const open = await new Promise<IDBDatabase>((r, j) => {
      const req = indexedDB.open(name);
      req.onsuccess = () => r(req.result);
      req.onerror = () => j(req.error);
    });
    const all = await new Promise<[string, unknown][]>((r, j) => {
      const store = open.transaction('blobs', 'readonly').objectStore('blobs');
      const keysReq = store.getAllKeys();
      const valuesReq = store.getAll();
      valuesReq.onsuccess = () => r(keysReq.result.map((k, i) => [String(k), valuesReq.result[i]]));
      valuesReq.onerror = () => j(valuesReq.error);
    });
    open.close();
    const segs = new Set(all.filter(([k]) => k.startsWith('seg:')).map(([k]) => k));
    const out: string[] = [];
    const referenced = new Set<string>();
    for (const [k, v] of all) {
      if (!k.startsWith('blob:') && !k.startsWith('part:')) continue;
      const record = v as { segments: string[]; size?: number; done?: number };
      for (const s of record.segments) {
        if (!segs.has(s)) out.push(`${k} points at missing ${s}`);
        if (referenced.has(s)) out.push(`${s} referenced twice`);
        referenced.add(s);
      }
      const blobs = record.segments.map((s) => all.find(([key]) => key === s)?.[1] as Blob | undefined);
      const bytes = blobs.reduce((n, b) => n + (b?.size ?? 0), 0);
      const expected = k.startsWith('blob:') ? record.size : record.done;
      if (bytes !== expected) out.push(`${k} holds ${bytes} bytes, says ${expected}`);
    }
    for (const s of segs) if (!referenced.has(s)) out.push(`orphan ${s}`);
    return out;
  }, db);
  expect(problems).toEqual([]);
}

const newDb = () => `store-test-${Date.now()}-${dbCount++}`;

describe('IdbBlobStore in Chromium', () => {
  it('put, has, size, getBlob, list, delete, sweep: segments split and stitched back', async () => {
    const page = await openPage();
    const db = newDb();
    const result = await page.evaluate(async (name) => {
      const { IdbBlobStore, sha256 } = globalThis.longshoreTest;
      const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
      const bytes = new Uint8Array(200_000);
      for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
      const key = await sha256(bytes);
      // Four chunks of 50,000 bytes: segments of 64 KiB are cut after the second and the fourth.
      const size = await store.put(
        key,
        new ReadableStream<Uint8Array>({
          start(c) {
            for (let i = 0; i < 4; i++) c.enqueue(bytes.slice(i * 50_000, (i + 1) * 50_000));
            c.close();
          },
        }),
      );
      const blob = await store.getBlob(key);
      const back = await sha256(new Uint8Array(await blob!.arrayBuffer()));
      return {
        key,
        size,
        has: await store.has(key),
        stored: await store.size(key),
        back,
        list: await store.list(),
        swept: await store.sweep(),
      };
    }, db);
    expect(result.size).toBe(200_000);
    expect(result.has).toBe(true);
    expect(result.stored).toBe(200_000);
    expect(result.back).toBe(result.key);
    expect(result.list).toEqual([{ key: result.key, size: 200_000 }]);
    expect(result.swept).toBe(0);
    const keys = await rawKeys(page, db);
    expect(keys.filter((k) => k.startsWith('seg:'))).toHaveLength(2);
    await expectConsistent(page, db);
    await page.evaluate(async ([name, key]) => new globalThis.longshoreTest.IdbBlobStore(name).delete(key), [db, result.key] as const);
    expect(await rawKeys(page, db)).toEqual([]);
    await page.context().close();
  });

  it('a partial download survives a page reload with its hasher state, stays invisible, and resumes with Range from its offset', async () => {
    const context = await browser.newContext();
    let page = await openPage(context);
    const db = newDb();
    // A blob served by an in-page sender that drops the connection after 150,000 bytes.
    const first = await page.evaluate(async (name) => {
      const { IdbBlobStore, sha256, fetchBlob, defaultRetryPolicy } = globalThis.longshoreTest;
      const bytes = new Uint8Array(400_000);
      for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
      const digest = await sha256(bytes);
      localStorage.setItem('blob', JSON.stringify(Array.from(bytes)));
      const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
      const sender = {
        retry: { ...defaultRetryPolicy, retries: 0 },
        send: async () => {
          let at = 0;
          return new Response(
            new ReadableStream<Uint8Array>(
              {
                pull(c) {
                  if (at >= 150_000) return c.error(new TypeError('network error'));
                  c.enqueue(bytes.slice(at, at + 10_000));
                  at += 10_000;
                },
              },
              { highWaterMark: 0 },
            ),
            { status: 200, headers: { 'content-length': String(bytes.length) } },
          );
        },
        fail: async () => new globalThis.longshoreTest.LongshoreError('HTTP', 'no'),
      };
      const error = await fetchBlob(sender, await store.openPartial(digest, bytes.length), {
        digest,
        size: bytes.length,
        label: 'blob',
      }).then(
        () => undefined,
        (e: { code: string }) => e.code,
      );
      return { digest, error, has: await store.has(digest), open: await store.open(digest), partials: await store.listPartials() };
    }, db);
    expect(first.error).toBe('NETWORK');
    expect(first.has).toBe(false);
    expect(first.open).toBeUndefined();
    expect(first.partials).toHaveLength(1);
    expect(first.partials[0]).toMatchObject({ key: first.digest, done: 150_000, total: 400_000 });
    await expectConsistent(page, db);

    await page.close();
    page = await openPage(context);
    const second = await page.evaluate(
      async ([name, digest]) => {
        const { IdbBlobStore, sha256, fetchBlob, defaultRetryPolicy } = globalThis.longshoreTest;
        const bytes = new Uint8Array(JSON.parse(localStorage.getItem('blob')!) as number[]);
        const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
        const ranges: string[] = [];
        const sender = {
          retry: defaultRetryPolicy,
          send: async (range?: { start: number }) => {
            ranges.push(range ? `bytes=${range.start}-` : '');
            const start = range?.start ?? 0;
            return new Response(bytes.slice(start), {
              status: range ? 206 : 200,
              headers: {
                'content-length': String(bytes.length - start),
                ...(range ? { 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
              },
            });
          },
          fail: async () => new globalThis.longshoreTest.LongshoreError('HTTP', 'no'),
        };
        await fetchBlob(sender, await store.openPartial(digest, bytes.length), { digest, size: bytes.length, label: 'blob' });
        const blob = await store.getBlob(digest);
        return { ranges, back: await sha256(new Uint8Array(await blob!.arrayBuffer())), partials: await store.listPartials() };
      },
      [db, first.digest] as const,
    );
    expect(second.ranges).toEqual(['bytes=150000-']);
    expect(second.back).toBe(first.digest);
    expect(second.partials).toEqual([]);
    await expectConsistent(page, db);
    await context.close();
  });

  it('parallel ranges spill to IndexedDB ahead of the hash cursor and leave no segment behind', async () => {
    const page = await openPage();
    const db = newDb();
    const result = await page.evaluate(async (name) => {
      const { IdbBlobStore, sha256, fetchBlob, defaultRetryPolicy } = globalThis.longshoreTest;
      const bytes = new Uint8Array(1_000_000);
      for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
      const digest = await sha256(bytes);
      const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
      const ranges: string[] = [];
      const sender = {
        retry: defaultRetryPolicy,
        send: async (range?: { start: number; end?: number }) => {
          const start = range?.start ?? 0;
          const end = range?.end ?? bytes.length - 1;
          ranges.push(`${start}-${end}`);
          return new Response(bytes.slice(start, end + 1), {
            status: range ? 206 : 200,
            headers: {
              'content-length': String(end - start + 1),
              ...(range ? { 'content-range': `bytes ${start}-${end}/${bytes.length}` } : {}),
            },
          });
        },
        fail: async () => new globalThis.longshoreTest.LongshoreError('HTTP', 'no'),
      };
      const spills: string[] = [];
      await fetchBlob(
        sender,
        await store.openPartial(digest, bytes.length),
        { digest, size: bytes.length, label: 'blob' },
        {
          parallel: { connections: 4, threshold: 500_000, spill: (id) => (spills.push(id), store.createSpill(digest)) },
        },
      );
      const blob = await store.getBlob(digest);
      return { ranges, spills: spills.length, back: await sha256(new Uint8Array(await blob!.arrayBuffer())), digest };
    }, db);
    expect(result.ranges).toEqual(['0-249999', '250000-499999', '500000-749999', '750000-999999']);
    expect(result.spills).toBe(3);
    expect(result.back).toBe(result.digest);
    await expectConsistent(page, db);
    await page.context().close();
  });

  it('discardPartial drops an idle partial, but not one a pull is writing (its lock is held)', async () => {
    const page = await openPage();
    const db = newDb();
    const result = await page.evaluate(async (name) => {
      const { IdbBlobStore, createHasher } = globalThis.longshoreTest;
      const store = new IdbBlobStore(name, { segmentBytes: 1024 });
      const hasher = await createHasher();
      const write = async (key: string) => {
        const p = await store.openPartial(key, 10_000);
        const chunk = new Uint8Array(2048);
        hasher.update(chunk);
        await p.write(chunk, () => hasher.save());
        return p;
      };
      const idle = await write(`sha256:${'1'.repeat(64)}`);
      await idle.close(true);
      const busy = await write(`sha256:${'2'.repeat(64)}`);
      const before = (await store.listPartials()).map((p) => p.key).sort();
      const dropped = [await store.discardPartial(`sha256:${'1'.repeat(64)}`), await store.discardPartial(`sha256:${'2'.repeat(64)}`)];
      await busy.close(false);
      return { before, dropped, after: await store.listPartials() };
    }, db);
    expect(result.before).toEqual([`sha256:${'1'.repeat(64)}`, `sha256:${'2'.repeat(64)}`]);
    expect(result.dropped).toEqual([true, false]);
    expect(result.after).toEqual([]);
    expect(await rawKeys(page, db)).toEqual([]);
    await page.context().close();
  });

  it('two tabs: sweep() in one does not delete the segments another is still writing', async () => {
    const context = await browser.newContext();
    const [writer, sweeper] = [await openPage(context), await openPage(context)];
    const db = newDb();
    // The writer's put() has flushed segments but not yet its record: they look like orphans.
    await writer.evaluate(async (name) => {
      const { IdbBlobStore } = globalThis.longshoreTest;
      const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
      const bytes = crypto.getRandomValues(new Uint8Array(65_536));
      let feed!: ReadableStreamDefaultController<Uint8Array>;
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
      for (let i = 0; i < 3; i++) feed.enqueue(bytes);
      const w = globalThis as unknown as { finish: () => void; putting: Promise<number> };
      w.finish = () => feed.close();
      w.putting = store.put(`sha256:${'3'.repeat(64)}`, stream);
    }, db);
    await expect
      .poll(async () => (await rawKeys(sweeper, db)).filter((k) => k.startsWith('seg:')).length, { timeout: 10_000 })
      .toBeGreaterThanOrEqual(2);
    const swept = await sweeper.evaluate(async (name) => new globalThis.longshoreTest.IdbBlobStore(name).sweep(), db);
    expect(swept).toBe(0);
    const stored = await writer.evaluate(async (name) => {
      const w = globalThis as unknown as { finish: () => void; putting: Promise<number> };
      w.finish();
      await w.putting;
      const blob = await new globalThis.longshoreTest.IdbBlobStore(name).getBlob(`sha256:${'3'.repeat(64)}`);
      return blob?.size;
    }, db);
    expect(stored).toBe(3 * 65_536);
    await expectConsistent(sweeper, db);
    // Once nobody writes, real orphans go.
    await sweeper.evaluate(async (name) => {
      const open = await new Promise<IDBDatabase>((r) => {
        const req = indexedDB.open(name);
        req.onsuccess = () => r(req.result);
      });
      await new Promise((r) => {
        const tx = open.transaction('blobs', 'readwrite');
        tx.objectStore('blobs').put(new Blob(['x']), `seg:sha256:${'4'.repeat(64)}:abc:0`);
        tx.oncomplete = r;
      });
      open.close();
    }, db);
    expect(await sweeper.evaluate(async (name) => new globalThis.longshoreTest.IdbBlobStore(name).sweep(), db)).toBe(1);
    await expectConsistent(sweeper, db);
    await context.close();
  });

  it('two tabs: a read that finds a broken record waits for the tab writing that blob and returns its new record, deleting nothing', async () => {
    const context = await browser.newContext();
    const [writer, reader] = [await openPage(context), await openPage(context)];
    const db = newDb();
    const key = `sha256:${'5'.repeat(64)}`;
    // A record whose segment is gone (evicted), then a tab that starts writing the blob again.
    await writer.evaluate(
      async ([name, k]) => {
        const { IdbBlobStore } = globalThis.longshoreTest;
        const store = new IdbBlobStore(name, { segmentBytes: 64 * 1024 });
        await store.put(k, new Blob([new Uint8Array(1000)]).stream());
        const open = await new Promise<IDBDatabase>((r) => {
          const req = indexedDB.open(name);
          req.onsuccess = () => r(req.result);
        });
        const record = await new Promise<{ segments: string[] }>((r) => {
          const req = open.transaction('blobs').objectStore('blobs').get(`blob:${k}`);
          req.onsuccess = () => r(req.result as { segments: string[] });
        });
        await new Promise((r) => {
          const tx = open.transaction('blobs', 'readwrite');
          tx.objectStore('blobs').delete(record.segments[0]!);
          tx.oncomplete = r;
        });
        open.close();
        let feed!: ReadableStreamDefaultController<Uint8Array>;
        const w = globalThis as unknown as { finish: () => void; putting: Promise<number> };
        w.putting = store.put(k, new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) }));
        feed.enqueue(new Uint8Array(2000).fill(7));
        w.finish = () => feed.close();
        // The writer holds the blob's lock before the other tab reads (bounded: a store without locks never will).
        for (let i = 0; i < 100 && !(await navigator.locks.query()).held?.some((l) => l.name?.endsWith(k)); i++)
          await new Promise((r) => setTimeout(r, 10));
      },
      [db, key] as const,
    );
    await reader.evaluate(
      ([name, k]) => {
        const r = globalThis as unknown as { reading: Promise<number | undefined> };
        r.reading = new globalThis.longshoreTest.IdbBlobStore(name).getBlob(k).then((b) => b?.size);
      },
      [db, key] as const,
    );
    await writer.evaluate(async () => {
      const w = globalThis as unknown as { finish: () => void; putting: Promise<number> };
      w.finish();
      await w.putting;
    });
    const size = await reader.evaluate(() => (globalThis as unknown as { reading: Promise<number | undefined> }).reading);
    expect(size).toBe(2000);
    expect(await reader.evaluate(([name, k]) => new globalThis.longshoreTest.IdbBlobStore(name).size(k), [db, key] as const)).toBe(2000);
    await expectConsistent(reader, db);
    await context.close();
  });

  it('a full disk (QuotaExceededError from an IndexedDB write) → QUOTA_EXCEEDED with a hint; the partial is dropped, no orphan segment', async () => {
    const page = await openPage();
    const db = newDb();
    const result = await page.evaluate(async (name) => {
      const { IdbBlobStore, sha256, fetchBlob, defaultRetryPolicy } = globalThis.longshoreTest;
      const bytes = crypto.getRandomValues(new Uint8Array(60_000));
      const digest = await sha256(bytes);
      // The third segment write hits the quota, as Chromium reports it.
      const put = IDBObjectStore.prototype.put;
      let segments = 0;
      IDBObjectStore.prototype.put = function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
        if (value instanceof Blob && ++segments >= 3) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        return put.call(this, value, key);
      };
      try {
        const store = new IdbBlobStore(name, { segmentBytes: 16 * 1024 });
        const sender = {
          retry: defaultRetryPolicy,
          send: async () =>
            new Response(
              new ReadableStream<Uint8Array>({
                start(c) {
                  for (let i = 0; i < bytes.length; i += 5_000) c.enqueue(bytes.slice(i, i + 5_000));
                  c.close();
                },
              }),
              { status: 200, headers: { 'content-length': String(bytes.length) } },
            ),
          fail: async () => new globalThis.longshoreTest.LongshoreError('HTTP', 'no'),
        };
        const error = await fetchBlob(sender, await store.openPartial(digest, bytes.length), {
          digest,
          size: bytes.length,
          label: 'layer 1/1',
        }).then(
          () => undefined,
          (e: { code: string; hint?: string }) => ({ code: e.code, hint: e.hint }),
        );
        const putError = await store.put(digest, new Blob([bytes]).stream()).then(
          () => `stored, ${segments} segment writes`,
          (e: { code: string }) => e.code ?? String(e),
        );
        return { error, putError, has: await store.has(digest), partials: await store.listPartials() };
      } finally {
        IDBObjectStore.prototype.put = put;
      }
    }, db);
    expect(result.error?.code).toBe('QUOTA_EXCEEDED');
    expect(result.error?.hint).toMatch(/space|cache/i);
    expect(result.putError).toBe('QUOTA_EXCEEDED');
    expect(result.has).toBe(false);
    expect(result.partials).toEqual([]);
    expect(await rawKeys(page, db)).toEqual([]);
    await page.context().close();
  });
});
