// GNU tar as the independent judge of the tar module: it lists and extracts what our writer makes,
// and our reader must see in GNU tar's archives (gnu and posix formats) exactly what is on disk.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, link, lstat, mkdir, mkdtemp, open, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TarEntryType,
  contentRef,
  encodeHeader,
  paddingFor,
  planTar,
  readTar,
  type ArchivePart,
  type TarEntryHeader,
  type TarPlanEntry,
} from '../../src/core/tar/index.ts';

const TAR = '/usr/bin/tar';
const ENV = { ...process.env, LC_ALL: 'C.UTF-8', TZ: 'UTC' };
const IS_ROOT = process.getuid?.() === 0;

interface Result {
  stdout: string;
  stderr: string;
  code: number;
}

/** Run a command, keeping stderr even on success: GNU tar warns there without failing. */
function exec(command: string, args: string[], cwd?: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: ENV, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

async function tar(args: string[], cwd?: string): Promise<string> {
  const result = await exec(TAR, args, cwd);
  expect(result.stderr, `tar ${args.join(' ')}`).toBe('');
  expect(result.code).toBe(0);
  return result.stdout;
}

let root: string;
let canMknod = false;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'longshore-tar-'));
  // Creating device nodes needs CAP_MKNOD; without it, devices are only listed, not extracted.
  canMknod = (await exec('mknod', [join(root, 'probe'), 'c', '1', '3'])).code === 0;
  await rm(join(root, 'probe'), { force: true });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** "drwxr-xr-x"-style string as tar -tv prints it. */
function lsMode(type: string, mode: number): string {
  const kind: Record<string, string> = { '0': '-', '1': 'h', '2': 'l', '3': 'c', '4': 'b', '5': 'd', '6': 'p' };
  const bit = (mask: number, ch: string): string => (mode & mask ? ch : '-');
  const exec = (x: number, special: number, on: string): string => {
    if (mode & special) return mode & x ? on : on.toUpperCase();
    return mode & x ? 'x' : '-';
  };
  return (
    kind[type]! +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    exec(0o100, 0o4000, 's') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    exec(0o010, 0o2000, 's') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    exec(0o001, 0o1000, 't')
  );
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

interface Listed {
  mode: string;
  owner: string;
  size: string;
  time: string;
  name: string;
}

function parseListing(stdout: string): Listed[] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => {
      const m = /^(\S{10}) (\S+)\s+(\S+) (\S+ \S+) (.*)$/.exec(line);
      if (!m) throw new Error(`unexpected tar -tv line: ${line}`);
      return { mode: m[1]!, owner: m[2]!, size: m[3]!, time: m[4]!, name: m[5]! };
    });
}

async function writeArchive(path: string, parts: ArchivePart[], blobs: Map<string, Uint8Array>): Promise<void> {
  const file = await open(path, 'w');
  try {
    for (const part of parts) await file.write(part instanceof Uint8Array ? part : blobs.get(part.key)!);
  } finally {
    await file.close();
  }
}

function webStream(path: string): ReadableStream<Uint8Array> {
  return Readable.toWeb(createReadStream(path, { highWaterMark: 64 * 1024 })) as ReadableStream<Uint8Array>;
}

/** The bytes cut into random chunk sizes (1 byte to 64 KiB), to cross every boundary. */
function randomChunks(bytes: Uint8Array, seed: number): ReadableStream<Uint8Array> {
  let state = seed;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      const n = next() < 0.3 ? 1 + Math.floor(next() * 16) : 1 + Math.floor(next() * 65536);
      controller.enqueue(bytes.slice(offset, offset + n));
      offset += n;
    },
  });
}

describe('GNU tar reads what our writer writes', () => {
  const mtime = 1_700_000_000;
  const longPath = `top/${'d'.repeat(100)}/${'e'.repeat(100)}/${'f'.repeat(94)}`; // 300 bytes, no ustar split
  const longTarget = `../${'t'.repeat(150)}`;
  const big = new Uint8Array(randomBytes(3 * 1024 * 1024 + 17));
  const small = new TextEncoder().encode('hello, tar\n');
  const utf8Content = new TextEncoder().encode('\u65e5\u672c\u8a9e\n');

  const base = { uid: 0, gid: 0, mtime };
  const entries: TarPlanEntry[] = [
    { header: { ...base, path: 'top/', type: TarEntryType.Directory, size: 0, mode: 0o755 } },
    {
      header: {
        ...base,
        path: 'top/hello.txt',
        type: TarEntryType.File,
        size: small.length,
        mode: 0o644,
        uid: 1000,
        gid: 100,
        uname: 'alice',
        gname: 'users',
      },
      content: small,
    },
    { header: { ...base, path: 'top/empty', type: TarEntryType.File, size: 0, mode: 0o600 } },
    { header: { ...base, path: 'top/setuid', type: TarEntryType.File, size: small.length, mode: 0o4755 }, content: small },
    { header: { ...base, path: 'top/setgid-noexec', type: TarEntryType.File, size: 0, mode: 0o2644 } },
    { header: { ...base, path: 'top/sticky/', type: TarEntryType.Directory, size: 0, mode: 0o1777 } },
    {
      header: { ...base, path: 'top/big.bin', type: TarEntryType.File, size: big.length, mode: 0o644, uid: 3_000_000, gid: 2_097_152 },
      content: contentRef('sha256:big', big.length),
    },
    { header: { ...base, path: 'top/link', type: TarEntryType.Symlink, size: 0, mode: 0o777, linkname: 'hello.txt' } },
    { header: { ...base, path: 'top/long-link', type: TarEntryType.Symlink, size: 0, mode: 0o777, linkname: longTarget } },
    { header: { ...base, path: 'top/hard', type: TarEntryType.Hardlink, size: 0, mode: 0o644, linkname: 'top/hello.txt' } },
    { header: { ...base, path: `top/${'d'.repeat(100)}/`, type: TarEntryType.Directory, size: 0, mode: 0o755 } },
    { header: { ...base, path: `top/${'d'.repeat(100)}/${'e'.repeat(100)}/`, type: TarEntryType.Directory, size: 0, mode: 0o750 } },
    { header: { ...base, path: longPath, type: TarEntryType.File, size: small.length, mode: 0o640 }, content: small },
    {
      header: { ...base, path: 'top/\u65e5\u672c\u8a9e.txt', type: TarEntryType.File, size: utf8Content.length, mode: 0o644 },
      content: utf8Content,
    },
    { header: { ...base, path: 'top/caf\u00e9-\u{1f433}/', type: TarEntryType.Directory, size: 0, mode: 0o755 } },
    { header: { ...base, path: 'top/null', type: TarEntryType.CharDevice, size: 0, mode: 0o666, devmajor: 1, devminor: 3 } },
    { header: { ...base, path: 'top/fifo', type: TarEntryType.Fifo, size: 0, mode: 0o644 } },
    {
      header: { ...base, path: 'top/old', type: TarEntryType.File, size: 1, mode: 0o644, mtime: -86400 * 365 },
      content: new Uint8Array([7]),
    },
  ];
  const blobs = new Map([['sha256:big', big]]);
  let archive: string;

  beforeAll(async () => {
    archive = join(root, 'ours.tar');
    const plan = planTar(entries);
    await writeArchive(archive, plan.parts, blobs);
    expect((await lstat(archive)).size).toBe(plan.size);
  });

  it('tar -tv lists every entry with our names, types, modes, owners, sizes, times and link targets', async () => {
    const listed = parseListing(
      await tar(['--list', '--verbose', '--numeric-owner', '--full-time', '--quoting-style=literal', '-f', archive]),
    );
    expect(listed).toHaveLength(entries.length);
    listed.forEach((line, i) => {
      const h = entries[i]!.header;
      expect(line.mode, h.path).toBe(lsMode(h.type, h.mode));
      expect(line.owner).toBe(`${h.uid}/${h.gid}`);
      expect(line.size).toBe(h.type === TarEntryType.CharDevice ? `${h.devmajor},${h.devminor}` : String(h.size));
      expect(line.time).toBe(isoSeconds(h.mtime));
      const name =
        h.type === TarEntryType.Symlink
          ? `${h.path} -> ${h.linkname}`
          : h.type === TarEntryType.Hardlink
            ? `${h.path} link to ${h.linkname}`
            : h.path;
      expect(line.name).toBe(name);
    });
    // Owner names are stored too.
    expect(await tar(['-tv', '-f', archive, 'top/hello.txt'])).toMatch(/ alice\/users /);
  });

  it('tar -x extracts the same tree: types, modes, owners, times, contents, links', async () => {
    const dest = join(root, 'extract-ours');
    await mkdir(dest);
    // top/old is from 1969 on purpose (PAX mtime=-31536000); GNU tar warns that it is "implausibly old".
    const args = ['-x', '-p', '--numeric-owner', '--warning=no-timestamp', '-f', archive, '-C', dest];
    if (!canMknod) args.push('--exclude=top/null');
    await tar(args);
    const inodes = new Map<string, number>();
    for (const { header: h, content } of entries) {
      if (h.type === TarEntryType.CharDevice && !canMknod) continue;
      const path = join(dest, h.path);
      const st = await lstat(path);
      const kinds: Record<string, () => boolean> = {
        '0': () => st.isFile(),
        '1': () => st.isFile(),
        '2': () => st.isSymbolicLink(),
        '3': () => st.isCharacterDevice(),
        '5': () => st.isDirectory(),
        '6': () => st.isFIFO(),
      };
      expect(kinds[h.type]!(), `${h.path} type`).toBe(true);
      if (h.type !== TarEntryType.Symlink) expect(st.mode & 0o7777, h.path).toBe(h.mode);
      if (IS_ROOT && h.type !== TarEntryType.Hardlink) {
        expect([st.uid, st.gid], h.path).toEqual([h.uid, h.gid]);
      }
      if (h.type !== TarEntryType.Hardlink) expect(Math.floor(st.mtimeMs / 1000), h.path).toBe(h.mtime);
      if (h.type === TarEntryType.File) {
        expect(st.size).toBe(h.size);
        const expected = content instanceof Uint8Array ? content : (blobs.get(content?.key ?? '') ?? new Uint8Array(0));
        expect(Buffer.from(expected).equals(await readFile(path)), `${h.path} content`).toBe(true);
        inodes.set(h.path, st.ino);
      }
      if (h.type === TarEntryType.Symlink) expect(await readlink(path)).toBe(h.linkname);
      if (h.type === TarEntryType.Hardlink) expect(st.ino).toBe(inodes.get(h.linkname!));
      if (h.type === TarEntryType.CharDevice) {
        expect([Math.floor(st.rdev / 256) & 0xfff, st.rdev & 0xff]).toEqual([h.devmajor, h.devminor]);
      }
    }
  });

  it("tar -t reads a 9 GiB entry's size from our PAX size record (sparse archive file, nothing written)", async () => {
    const size = 9 * 2 ** 30;
    const header = encodeHeader({ path: 'huge.bin', type: TarEntryType.File, size, mode: 0o644, uid: 0, gid: 0, mtime });
    expect(new TextDecoder().decode(header.subarray(512, 512 + 19))).toBe('19 size=9663676416\n');
    const path = join(root, 'huge.tar');
    const file = await open(path, 'w');
    try {
      await file.write(header);
      await file.truncate(header.length + size + paddingFor(size) + 1024);
    } finally {
      await file.close();
    }
    const st = await lstat(path);
    if (st.blocks * 512 > 64 * 1024 * 1024) throw new Error('the temp filesystem does not support sparse files');
    const listed = parseListing(await tar(['-tv', '--numeric-owner', '--full-time', '-f', path]));
    expect(listed).toEqual([{ mode: '-rw-r--r--', owner: '0/0', size: '9663676416', time: isoSeconds(mtime), name: 'huge.bin' }]);
  });
});

describe('our reader reads what GNU tar writes', () => {
  let src: string;
  const files = new Map<string, Uint8Array>();
  const longDir = `tree/${'L'.repeat(120)}/${'M'.repeat(120)}`;

  beforeAll(async () => {
    src = join(root, 'src');
    const at = (p: string): string => join(src, p);
    await mkdir(at(longDir), { recursive: true });
    await mkdir(at('tree/\u65e5\u672c\u8a9e'), { recursive: true });
    const put = async (p: string, bytes: Uint8Array, mode = 0o644): Promise<void> => {
      await writeFile(at(p), bytes);
      await chmod(at(p), mode);
      files.set(p, bytes);
    };
    await put('tree/small.txt', new TextEncoder().encode('hello\n'));
    await put('tree/empty', new Uint8Array(0));
    await put('tree/block', new Uint8Array(randomBytes(512)));
    await put('tree/big.bin', new Uint8Array(randomBytes(3 * 1024 * 1024 + 123)));
    await put('tree/setuid', new TextEncoder().encode('#!/bin/sh\n'), 0o4755);
    await put(`tree/${'n'.repeat(200)}.txt`, new TextEncoder().encode('long name\n'));
    await put(`${longDir}/${'f'.repeat(150)}`, new TextEncoder().encode('deep\n'), 0o600);
    await put('tree/\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb.txt', new TextEncoder().encode('utf-8\n'));
    await symlink('small.txt', at('tree/link'));
    await symlink(`../${'x'.repeat(150)}/target`, at('tree/long-link'));
    await link(at('tree/small.txt'), at('tree/hard'));
    await link(at(`${longDir}/${'f'.repeat(150)}`), at('tree/hard-to-long'));
    await exec('mkfifo', [at('tree/fifo')]);
    await utimes(at('tree/small.txt'), 1_600_000_000, 1_600_000_000.25);
  });

  interface Seen {
    header: TarEntryHeader;
    content: Uint8Array;
  }

  async function readWithOurs(stream: ReadableStream<Uint8Array>): Promise<Seen[]> {
    const seen: Seen[] = [];
    for await (const entry of readTar(stream)) {
      // Alternate between the streaming body and bytes() to exercise both.
      const content = seen.length % 2 === 0 ? await entry.bytes() : new Uint8Array(await new Response(entry.body()).arrayBuffer());
      seen.push({ header: entry.header, content });
    }
    return seen;
  }

  async function checkAgainstDisk(seen: Seen[], archive: string): Promise<void> {
    // Same member names, in the same order, as GNU tar itself lists.
    const names = (await tar(['-t', '--quoting-style=literal', '-f', archive])).trimEnd().split('\n');
    expect(seen.map((s) => s.header.path)).toEqual(names);
    expect(names.some((n) => Buffer.byteLength(n) > 255)).toBe(true);

    const firstByInode = new Map<number, string>();
    for (const { header: h, content } of seen) {
      const path = join(src, h.path);
      const st = await lstat(path);
      expect(h.mode & 0o7777, h.path).toBe(st.mode & 0o7777);
      expect([h.uid, h.gid], h.path).toEqual([st.uid, st.gid]);
      expect(Math.floor(h.mtime), h.path).toBe(Math.floor(st.mtimeMs / 1000));
      if (st.isDirectory()) {
        expect(h.type).toBe(TarEntryType.Directory);
        expect(h.path.endsWith('/')).toBe(true);
      } else if (st.isSymbolicLink()) {
        expect(h.type).toBe(TarEntryType.Symlink);
        expect(h.linkname).toBe(await readlink(path));
      } else if (st.isFIFO()) {
        expect(h.type).toBe(TarEntryType.Fifo);
      } else if (firstByInode.has(st.ino)) {
        expect(h.type, h.path).toBe(TarEntryType.Hardlink);
        expect(h.linkname).toBe(firstByInode.get(st.ino));
        expect(h.size).toBe(0);
      } else {
        expect(h.type, h.path).toBe(TarEntryType.File);
        expect(h.size).toBe(st.size);
        expect(Buffer.from(content).equals(await readFile(path)), h.path).toBe(true);
        firstByInode.set(st.ino, h.path);
      }
      if (!st.isFile() || h.type === TarEntryType.Hardlink) expect(content.length).toBe(0);
    }
    // Every file we made was seen with its content.
    for (const [p, bytes] of files) {
      const entry = seen.find((s) => s.header.path === p) ?? seen.find((s) => s.header.linkname === p);
      expect(entry, p).toBeDefined();
      if (entry!.header.type === TarEntryType.File) expect(Buffer.from(entry!.content).equals(Buffer.from(bytes))).toBe(true);
    }
    if (IS_ROOT) expect(seen.find((s) => s.header.path === 'tree/small.txt')?.header.uname).toBe('root');
  }

  for (const format of ['gnu', 'posix'] as const) {
    it(`reads a --format=${format} archive: long names, symlinks, hardlinks, UTF-8, a 3 MiB file`, async () => {
      const archive = join(root, `gnu-${format}.tar`);
      await tar(['--format', format, '-c', '-f', archive, 'tree'], src);
      const raw = new Uint8Array(await readFile(archive));
      if (format === 'gnu') {
        expect(Buffer.from(raw).includes('././@LongLink')).toBe(true);
      } else {
        expect(Buffer.from(raw).includes('PaxHeaders')).toBe(true);
      }

      const fromFile = await readWithOurs(webStream(archive));
      await checkAgainstDisk(fromFile, archive);
      for (const seed of [7, 42]) {
        const fromChunks = await readWithOurs(randomChunks(raw, seed));
        expect(fromChunks.map((s) => [s.header, s.content.length])).toEqual(fromFile.map((s) => [s.header, s.content.length]));
        fromChunks.forEach((s, i) => expect(Buffer.from(s.content).equals(Buffer.from(fromFile[i]!.content))).toBe(true));
      }
      if (format === 'posix') {
        // GNU tar's posix format carries sub-second times in PAX records.
        expect(fromFile.find((s) => s.header.path === 'tree/small.txt')?.header.mtime).toBe(1_600_000_000.25);
      }
    });
  }

  it('reads a GNU tar archive of one directory listing entry by entry while skipping bodies', async () => {
    const archive = join(root, 'skip.tar');
    await tar(['--format=posix', '-c', '-f', archive, 'tree'], src);
    const names: string[] = [];
    for await (const entry of readTar(webStream(archive))) names.push(entry.header.path);
    const listed = (await tar(['-t', '--quoting-style=literal', '-f', archive])).trimEnd().split('\n');
    expect(names).toEqual(listed);
  });
});
