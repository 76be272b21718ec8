// Layer listings, the merged filesystem, its export and the query view, on tars crafted here with
// the project's tar writer; hostile tars each end in a bounded, explained result.
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TarEntryType, readTar, tarBytes, type TarEntryHeader } from '../../src/core/tar/index.ts';
import {
  EntryKind,
  ListingView,
  cleanPath,
  compileFilter,
  exportStream,
  layerItems,
  listLayer,
  mergeLayers,
  modeString,
  openEntryBody,
  planExport,
  visibleName,
  type ListingEntry,
} from '../../src/core/listing/index.ts';

const utf8 = new TextEncoder();
const MTIME = 1_704_067_200;

type Spec = {
  path: string;
  type?: TarEntryHeader['type'];
  content?: string | Uint8Array;
  mode?: number;
  link?: string;
  pax?: Record<string, string>;
  dev?: [number, number];
};

function layerTar(specs: Spec[]): Uint8Array {
  return tarBytes(
    specs.map((s) => {
      const type = s.type ?? TarEntryType.File;
      const content = typeof s.content === 'string' ? utf8.encode(s.content) : s.content;
      const header: TarEntryHeader = {
        path: s.path,
        type,
        size: type === TarEntryType.File ? (content?.length ?? 0) : 0,
        mode: s.mode ?? (type === TarEntryType.Directory ? 0o755 : 0o644),
        uid: 0,
        gid: 0,
        mtime: MTIME,
      };
      if (s.link) header.linkname = s.link;
      if (s.pax) header.pax = s.pax;
      if (s.dev) [header.devmajor, header.devminor] = s.dev;
      return type === TarEntryType.File && content ? { header, content } : { header };
    }),
  );
}

function streamOf(bytes: Uint8Array, chunk = 4096): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

async function list(specs: Spec[] | Uint8Array, options: Parameters<typeof listLayer>[1] = {}) {
  return listLayer(streamOf(specs instanceof Uint8Array ? specs : layerTar(specs)), options);
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

describe('mode strings', () => {
  it('shows type, permissions and setuid/setgid/sticky like ls -l', () => {
    expect(modeString(EntryKind.File, 0o644)).toBe('-rw-r--r--');
    expect(modeString(EntryKind.File, 0o4755)).toBe('-rwsr-xr-x');
    expect(modeString(EntryKind.File, 0o4644)).toBe('-rwSr--r--');
    expect(modeString(EntryKind.File, 0o2755)).toBe('-rwxr-sr-x');
    expect(modeString(EntryKind.File, 0o2745)).toBe('-rwxr-Sr-x');
    expect(modeString(EntryKind.Dir, 0o1777)).toBe('drwxrwxrwt');
    expect(modeString(EntryKind.Dir, 0o1776)).toBe('drwxrwxrwT');
    expect(modeString(EntryKind.Symlink, 0o777)).toBe('lrwxrwxrwx');
    expect(modeString(EntryKind.CharDevice, 0o666)).toBe('crw-rw-rw-');
    expect(modeString(EntryKind.BlockDevice, 0o660)).toBe('brw-rw----');
    expect(modeString(EntryKind.Fifo, 0o644)).toBe('prw-r--r--');
    expect(modeString(EntryKind.Hardlink, 0o755)).toBe('hrwxr-xr-x');
  });
});

describe('path cleaning', () => {
  it('strips ./ and /, folds . and .., and refuses climbing above the root', () => {
    expect(cleanPath('./etc/passwd')).toEqual({ ok: true, path: 'etc/passwd', absolute: false, dotDot: false });
    expect(cleanPath('/etc//x/')).toEqual({ ok: true, path: 'etc/x', absolute: true, dotDot: false });
    expect(cleanPath('a/b/../c')).toEqual({ ok: true, path: 'a/c', absolute: false, dotDot: true });
    expect(cleanPath('./')).toEqual({ ok: true, path: '', absolute: false, dotDot: false });
    expect(cleanPath('../etc/passwd').ok).toBe(false);
    expect(cleanPath('a/../../b').ok).toBe(false);
  });

  it('shows control characters as escapes', () => {
    expect(visibleName('a\nb\tc\x1b[31m\\')).toBe('a\\nb\\tc\\x1b[31m\\\\');
    expect(visibleName('<b>plain</b>')).toBe('<b>plain</b>');
  });
});

describe('listLayer', () => {
  it('lists every kind with clean paths, owners, modes, links and device numbers', async () => {
    const l = await list([
      { path: './', type: TarEntryType.Directory },
      { path: './bin/', type: TarEntryType.Directory },
      { path: './bin/su', content: 'su', mode: 0o4755 },
      { path: './bin/su-link', type: TarEntryType.Hardlink, link: './bin/su' },
      { path: './bin/sh', type: TarEntryType.Symlink, link: '/bin/busybox', mode: 0o777 },
      { path: './dev/null', type: TarEntryType.CharDevice, dev: [1, 3], mode: 0o666 },
      { path: './dev/loop0', type: TarEntryType.BlockDevice, dev: [7, 0], mode: 0o660 },
      { path: './run/fifo', type: TarEntryType.Fifo },
      { path: './etc/.wh.gone', content: '' },
      { path: './var/.wh..wh..opq', content: '' },
    ]);
    expect(l.status).toBe('complete');
    expect(l.entries.map((e) => [e.path, e.kind])).toEqual([
      ['', 'dir'],
      ['bin', 'dir'],
      ['bin/su', 'file'],
      ['bin/su-link', 'hardlink'],
      ['bin/sh', 'symlink'],
      ['dev/null', 'char'],
      ['dev/loop0', 'block'],
      ['run/fifo', 'fifo'],
      ['etc/.wh.gone', 'whiteout'],
      ['var/.wh..wh..opq', 'opaque'],
    ]);
    const [, , su, link, sh, nul] = l.entries;
    expect(modeString(su!.kind, su!.mode)).toBe('-rwsr-xr-x');
    expect(link!.linkTarget).toBe('bin/su');
    expect(sh!.linkTarget).toBe('/bin/busybox');
    expect([nul!.devMajor, nul!.devMinor]).toEqual([1, 3]);
    expect(l.entries[8]!.whiteout).toBe('etc/gone');
    expect(l.entries[9]!.whiteout).toBe('var');
    expect(l.totals).toMatchObject({
      entries: 10,
      files: 1,
      dirs: 2,
      symlinks: 1,
      hardlinks: 1,
      devices: 3,
      whiteouts: 1,
      opaques: 1,
      bytes: 2,
    });
    expect(l.issueCount).toBe(0);
  });

  it('normalises absolute and ".." names, drops those that climb out, and reports each', async () => {
    const l = await list([
      { path: '/etc/abs', content: 'a' },
      { path: 'usr/../etc/dotdot', content: 'b' },
      { path: '../../etc/escape', content: 'c' },
      { path: 'ok/hard', type: TarEntryType.Hardlink, link: '../../etc/shadow' },
      { path: 'x/.wh...', content: '' },
    ]);
    expect(l.status).toBe('complete');
    expect(l.entries.map((e) => e.path)).toEqual(['etc/abs', 'etc/dotdot']);
    expect(l.entries[0]!.rawPath).toBe('/etc/abs');
    expect(l.issues.map((i) => i.code)).toEqual(['absolute-path', 'dot-dot', 'unsafe-path', 'unsafe-link', 'unsafe-path']);
    expect(l.issues[2]!.message).toMatch(/Dropped "\.\.\/\.\.\/etc\/escape"/);
  });

  it('keeps names with control characters and markup as data, and flags control characters', async () => {
    const l = await list([
      { path: 'weird/<img src=x onerror=alert(1)>.txt', content: 'x' },
      { path: 'weird/new\nline\x1b[2J', content: 'y' },
    ]);
    expect(l.entries.map((e) => e.path)).toEqual(['weird/<img src=x onerror=alert(1)>.txt', 'weird/new\nline\x1b[2J']);
    expect(l.issues).toHaveLength(1);
    expect(l.issues[0]).toMatchObject({ code: 'control-characters', message: expect.stringContaining('new\\nline\\x1b[2J') });
  });

  it('stops at a huge PAX header with the entries before it and a clear reason', async () => {
    const tar = layerTar([
      { path: 'first', content: 'ok' },
      { path: 'huge', content: 'x', pax: { comment: 'A'.repeat(2 * 1024 * 1024) } },
    ]);
    const l = await list(tar);
    expect(l.status).toBe('failed');
    expect(l.entries.map((e) => e.path)).toEqual(['first']);
    expect(l.error?.message).toMatch(/over the limit of 1048576 bytes/);
  });

  it('reports a truncated stream and keeps what was read', async () => {
    const tar = layerTar([
      { path: 'a', content: 'hello' },
      { path: 'b', content: new Uint8Array(5000) },
    ]);
    const l = await list(tar.slice(0, 512 * 3 + 100));
    expect(l.status).toBe('failed');
    expect(l.entries.map((e) => e.path)).toEqual(['a', 'b']);
    expect(l.issues.at(-1)).toMatchObject({ code: 'truncated' });
  });

  it('stops a gzip bomb at the decompressed-bytes cap', async () => {
    const bomb = gzipSync(
      layerTar([
        { path: 'zeros', content: new Uint8Array(16 * 1024 * 1024) },
        { path: 'after', content: 'x' },
      ]),
    );
    expect(bomb.length).toBeLessThan(64 * 1024);
    const l = await list(new Uint8Array(bomb), { limits: { maxBytes: 1024 * 1024 } });
    expect(l.status).toBe('limited');
    expect(l.compression).toBe('gzip');
    expect(l.bytes).toBe(1024 * 1024);
    expect(l.error?.code).toBe('TOO_LARGE');
    expect(l.error?.message).toMatch(/more than 1048576 decompressed bytes/);
    expect(l.entries.map((e) => e.path)).toEqual(['zeros']);
  });

  it('stops at the entry cap', async () => {
    const specs = Array.from({ length: 50 }, (_, i) => ({ path: `f${i}`, content: '' }));
    const l = await list(specs, { limits: { maxEntries: 10 } });
    expect(l.status).toBe('limited');
    expect(l.entries).toHaveLength(10);
    expect(l.error?.message).toMatch(/more than 10 entries/);
  });
});

const E = (path: string, kind: ListingEntry['kind'], extra: Partial<ListingEntry> = {}): ListingEntry => ({
  ordinal: 0,
  path,
  kind,
  size: 0,
  mode: kind === 'dir' ? 0o755 : 0o644,
  uid: 0,
  gid: 0,
  mtime: MTIME,
  ...extra,
});

function layer(...entries: ListingEntry[]): ListingEntry[] {
  return entries.map((e, i) => ({ ...e, ordinal: i }));
}

describe('mergeLayers', () => {
  it("applies whiteouts and opaque markers to lower layers only, before the layer's own entries", () => {
    const l0 = layer(
      E('a', 'dir'),
      E('a/b', 'dir'),
      E('a/b/bar', 'file', { size: 3 }),
      E('etc', 'dir'),
      E('etc/gone', 'file', { size: 10 }),
      E('etc/keep', 'file'),
    );
    const l1 = layer(
      E('a', 'dir'),
      E('a/b', 'dir'),
      E('a/b/foo', 'file', { size: 4 }),
      E('a/.wh..wh..opq', 'opaque', { whiteout: 'a' }),
      E('etc/.wh.gone', 'whiteout', { whiteout: 'etc/gone' }),
      E('etc/new', 'file'),
      E('etc/.wh.new', 'whiteout', { whiteout: 'etc/new' }),
    );
    const m = mergeLayers([l0, l1]);
    expect(m.entries.map((e) => `${e.path}@${e.layer}`)).toEqual(['a@1', 'a/b@1', 'a/b/foo@1', 'etc@0', 'etc/keep@0', 'etc/new@1']);
    expect(m.entries.find((e) => e.path === 'a')!.overrides).toEqual([0]);
    expect(m.changes[1]).toMatchObject({ added: 3, deleted: 3, removedBytes: 13, unchangedDirs: 1 });
    expect(m.whiteouts[1]!.get(3)).toMatchObject({ kind: 'opaque', target: 'a', removed: 2, fromLayers: [0] });
    expect(m.whiteouts[1]!.get(4)).toMatchObject({ kind: 'whiteout', target: 'etc/gone', removed: 1, removedBytes: 10 });
    expect(m.whiteouts[1]!.get(6)).toMatchObject({ removed: 0 });
  });

  it('replaces a directory by a non-directory whole, and a directory over a directory keeps children', () => {
    const l0 = layer(E('d', 'dir'), E('d/x', 'file', { size: 1 }), E('e', 'dir', { mode: 0o700 }), E('e/y', 'file'), E('f', 'file'));
    const l1 = layer(
      E('d', 'symlink', { linkTarget: '/tmp' }),
      E('e', 'dir', { mode: 0o755 }),
      E('f', 'dir'),
      E('f/z', 'file'),
      E('g/h', 'file'),
    );
    const m = mergeLayers([l0, l1]);
    expect(m.entries.map((e) => `${e.path}:${e.entry.kind}@${e.layer}${e.implicit ? '(implicit)' : ''}`)).toEqual([
      'd:symlink@1',
      'e:dir@1',
      'e/y:file@0',
      'f:dir@1',
      'f/z:file@1',
      'g:dir@-1(implicit)',
      'g/h:file@1',
    ]);
    expect(m.changes[1]).toMatchObject({ changed: 3, deleted: 1, added: 2 });
  });

  it('resolves hardlinks where they are applied, across layers', () => {
    const l0 = layer(E('a', 'file', { size: 5 }), E('b', 'hardlink', { linkTarget: 'a' }));
    const l1 = layer(E('a', 'file', { size: 9 }), E('c', 'hardlink', { linkTarget: 'b' }), E('d', 'hardlink', { linkTarget: 'nope' }));
    const m = mergeLayers([l0, l1]);
    expect(m.entries.find((e) => e.path === 'b')!.linkSource).toEqual({ layer: 0, ordinal: 0, path: 'a' });
    expect(m.entries.find((e) => e.path === 'c')!.linkSource).toEqual({ layer: 0, ordinal: 0, path: 'a' });
    expect(m.issues.map((i) => i.code)).toEqual(['dangling-hardlink']);
  });
});

describe('export', () => {
  it('writes the merged filesystem bottom layer first, promoting hardlinks whose file was replaced', async () => {
    const t0 = layerTar([
      { path: 'etc/', type: TarEntryType.Directory },
      { path: 'etc/a', content: 'old a' },
      { path: 'etc/b', type: TarEntryType.Hardlink, link: 'etc/a' },
      { path: 'etc/gone', content: 'bye' },
      { path: 'etc/x', content: 'x' },
      { path: 'etc/y', type: TarEntryType.Hardlink, link: 'etc/x' },
    ]);
    const t1 = layerTar([
      { path: 'etc/a', content: 'new a!' },
      { path: 'etc/.wh.gone', content: '' },
      { path: 'etc/c', type: TarEntryType.Hardlink, link: 'etc/b' },
      { path: 'dev/null', type: TarEntryType.CharDevice, dev: [1, 3] },
    ]);
    const blobs = [t0, t1];
    const listings = await Promise.all(blobs.map((b) => list(b)));
    const merged = mergeLayers(listings.map((l) => l.entries));
    const plan = planExport(
      merged,
      listings.map((l) => l.entries),
    );
    const out = await collect(exportStream(plan, { openLayer: async (i) => streamOf(blobs[i]!, 700) }));
    const got: string[] = [];
    for await (const e of readTar(streamOf(out))) {
      const body = e.header.type === TarEntryType.File ? new TextDecoder().decode(await e.bytes()) : '';
      got.push(`${e.header.path} ${e.header.type}${e.header.linkname ? ` -> ${e.header.linkname}` : ''}${body ? ` "${body}"` : ''}`);
    }
    expect(got).toEqual([
      'etc/ 5',
      'etc/b 0 "old a"',
      'etc/x 0 "x"',
      'etc/y 1 -> etc/x',
      'etc/a 0 "new a!"',
      'etc/c 1 -> etc/b',
      'dev/null 3',
    ]);
    expect(plan.entries).toBe(7);
  });

  it('extracts one entry body by ordinal without reading the rest', async () => {
    const tar = layerTar([
      { path: 'a', content: 'A' },
      { path: 'b', content: 'BBBB' },
      { path: 'c', content: 'C' },
    ]);
    const { header, body } = await openEntryBody(streamOf(tar, 100), 1);
    expect(header.path).toBe('b');
    expect(new TextDecoder().decode(await collect(body))).toBe('BBBB');
  });
});

describe('filters and views', () => {
  it('matches substrings case-insensitively, base-name globs and path globs', () => {
    const sub = compileFilter('ETC/p')!;
    expect(sub('etc/passwd')).toBe(true);
    expect(sub('usr/etc')).toBe(false);
    const base = compileFilter('*.so')!;
    expect(base('usr/lib/libc.so')).toBe(true);
    expect(base('usr/lib/libc.so.6')).toBe(false);
    const path = compileFilter('/usr/**/*.so')!;
    expect(path('usr/lib/x/libc.so')).toBe(true);
    expect(path('usr/libc.so')).toBe(true);
    expect(path('opt/libc.so')).toBe(false);
    expect(compileFilter('lib[!c]*')!('usr/libz')).toBe(true);
    expect(compileFilter('   ')).toBeUndefined();
  });

  it('answers flat and tree queries with sorting, filtering and directory totals', () => {
    const entries = layer(
      E('usr', 'dir'),
      E('usr/lib', 'dir'),
      E('usr/lib/big.so', 'file', { size: 900 }),
      E('usr/lib/small.so', 'file', { size: 10 }),
      E('etc/passwd', 'file', { size: 50 }),
    );
    const view = new ListingView(layerItems(entries, 0));
    expect(view.rows({ mode: 'flat', sort: 'size', descending: true }, 0, 3).rows.map((r) => r.path)).toEqual([
      'usr/lib/big.so',
      'etc/passwd',
      'usr/lib/small.so',
    ]);
    const tree = view.rows({ mode: 'tree' }, 0, 10);
    expect(tree.rows.map((r) => r.path)).toEqual(['etc', 'usr']);
    expect(tree.rows[1]!.totals).toEqual({ entries: 3, files: 2, bytes: 910 });
    expect(tree.rows[0]!.item).toBeUndefined();
    const open = view.rows({ mode: 'tree', expanded: ['usr', 'usr/lib'], sort: 'size', descending: true }, 0, 10);
    expect(open.rows.map((r) => `${'  '.repeat(r.depth)}${r.name}`)).toEqual(['usr', '  lib', '    big.so', '    small.so', 'etc']);
    const filtered = view.rows({ mode: 'tree', filter: 'small' }, 0, 10);
    expect(filtered.rows.map((r) => r.path)).toEqual(['usr', 'usr/lib', 'usr/lib/small.so']);
    view.add(layerItems(layer(E('usr/lib/more.so', 'file', { size: 1 })), 0));
    expect(view.dirTotals('usr')).toEqual({ entries: 4, files: 3, bytes: 911 });
  });
});
