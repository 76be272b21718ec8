import { describe, expect, it } from 'vitest';
import { ErrorCode, LongshoreError } from '../../src/core/errors.ts';
import {
  BLOCK_SIZE,
  END_OF_ARCHIVE_SIZE,
  TarEntryType,
  contentRef,
  decodeHeader,
  encodeHeader,
  encodePax,
  endOfArchive,
  paddingFor,
  parsePax,
  planTar,
  readTar,
  tarBytes,
  type ArchivePart,
  type TarEntry,
  type TarEntryHeader,
  type TarPlanEntry,
} from '../../src/core/tar/index.ts';

const utf8 = new TextEncoder();
const text = new TextDecoder();
const GiB = 2 ** 30;

function fileHeader(path: string, size: number, extra: Partial<TarEntryHeader> = {}): TarEntryHeader {
  return { path, type: TarEntryType.File, size, mode: 0o644, uid: 1000, gid: 1000, mtime: 1_700_000_000, ...extra };
}

function dirHeader(path: string, extra: Partial<TarEntryHeader> = {}): TarEntryHeader {
  return { path, type: TarEntryType.Directory, size: 0, mode: 0o755, uid: 0, gid: 0, mtime: 1_700_000_000, ...extra };
}

function field(block: Uint8Array, offset: number, length: number): string {
  return String.fromCharCode(...block.subarray(offset, offset + length));
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const next = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
  return out;
}

/** A stream of `bytes` cut into chunks whose sizes come from `chunkSize`. */
function chunked(
  bytes: Uint8Array,
  chunkSize: (index: number) => number,
): ReadableStream<Uint8Array> & { cancelled: () => boolean; pulledToEnd: () => boolean } {
  let offset = 0;
  let index = 0;
  let cancelled = false;
  let pulledToEnd = false;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (offset >= bytes.length) {
          pulledToEnd = true;
          controller.close();
          return;
        }
        const n = Math.max(1, chunkSize(index++));
        controller.enqueue(bytes.slice(offset, offset + n));
        offset += n;
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return Object.assign(stream, { cancelled: () => cancelled, pulledToEnd: () => pulledToEnd });
}

const whole = (bytes: Uint8Array) => chunked(bytes, () => bytes.length);

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

async function collect(
  stream: ReadableStream<Uint8Array>,
  how: 'body' | 'bytes' = 'body',
): Promise<{ header: TarEntryHeader; content: Uint8Array }[]> {
  const out: { header: TarEntryHeader; content: Uint8Array }[] = [];
  for await (const entry of readTar(stream)) {
    out.push({ header: entry.header, content: how === 'body' ? await readAll(entry.body()) : await entry.bytes() });
  }
  return out;
}

async function expectTarError(promise: Promise<unknown>, message: RegExp): Promise<LongshoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LongshoreError);
  expect((err as LongshoreError).code).toBe(ErrorCode.Tar);
  expect((err as LongshoreError).message).toMatch(message);
  return err as LongshoreError;
}

function expectTarThrow(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LongshoreError);
    expect((err as LongshoreError).code).toBe(ErrorCode.Tar);
    expect((err as LongshoreError).message).toMatch(message);
    return;
  }
  throw new Error('expected a TAR error');
}

/** Re-sign a hand-edited header block. */
function resign(block: Uint8Array): Uint8Array {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  const digits = sum.toString(8).padStart(6, '0');
  for (let i = 0; i < 6; i++) block[148 + i] = digits.charCodeAt(i);
  block[154] = 0;
  block[155] = 0x20;
  return block;
}

/** A raw header block of any typeflag, e.g. GNU 'L', which encodeHeader refuses to write. */
function rawBlock(path: string, typeflag: string, size: number): Uint8Array {
  const block = encodeHeader(fileHeader(path, size)).slice();
  block[156] = typeflag.charCodeAt(0);
  return resign(block);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function withData(data: Uint8Array): Uint8Array {
  return concat(data, new Uint8Array(paddingFor(data.length)));
}

/** The PAX records of an encodeHeader() result that starts with an 'x' header. */
function paxOf(bytes: Uint8Array): Record<string, string> {
  const first = decodeHeader(bytes.subarray(0, BLOCK_SIZE));
  expect(first?.type).toBe(TarEntryType.PaxExtended);
  return parsePax(bytes.subarray(BLOCK_SIZE, BLOCK_SIZE + first!.size));
}

async function readOne(bytes: Uint8Array): Promise<TarEntryHeader> {
  const entries = await collect(whole(concat(bytes, endOfArchive())));
  expect(entries).toHaveLength(1);
  return entries[0]!.header;
}

describe('tar header encoding', () => {
  it('writes a plain ustar header that decodes to the same fields', () => {
    const h = fileHeader('etc/hosts', 1234, { mode: 0o640, uid: 12, gid: 34, uname: 'alice', gname: 'staff' });
    const bytes = encodeHeader(h);
    expect(bytes.length).toBe(BLOCK_SIZE);
    expect(decodeHeader(bytes)).toEqual(h);
  });

  it('formats numeric fields as zero-padded octal with NUL, magic "ustar\\0" "00"', () => {
    const bytes = encodeHeader(fileHeader('a', 6, { mode: 0o4755 }));
    expect(field(bytes, 100, 8)).toBe('0004755\0');
    expect(field(bytes, 108, 8)).toBe('0001750\0');
    expect(field(bytes, 124, 12)).toBe('00000000006\0');
    expect(field(bytes, 136, 12)).toBe(`${(1_700_000_000).toString(8)}\0`);
    expect(field(bytes, 257, 8)).toBe('ustar\u000000');
    expect(field(bytes, 156, 1)).toBe('0');
  });

  it('writes a correct checksum: six octal digits, NUL, space', () => {
    const bytes = encodeHeader(fileHeader('some/file.txt', 99));
    let sum = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) sum += i >= 148 && i < 156 ? 0x20 : bytes[i]!;
    expect(field(bytes, 148, 8)).toBe(`${sum.toString(8).padStart(6, '0')}\0 `);
  });

  it('rejects a block whose checksum does not match', () => {
    const bytes = encodeHeader(fileHeader('file', 1)).slice();
    bytes[0] = 'g'.charCodeAt(0);
    expectTarThrow(() => decodeHeader(bytes, 1536), /checksum mismatch at byte offset 1536/);
  });

  it('accepts a checksum computed with signed bytes (old writers)', () => {
    const bytes = encodeHeader(fileHeader('caf\u00e9', 0)).slice(BLOCK_SIZE * 2); // the ustar block after the PAX header
    bytes.set([0xc3, 0xa9], 3);
    let sum = 0;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      const b = i >= 148 && i < 156 ? 0x20 : bytes[i]!;
      sum += b >= 0x80 ? b - 0x100 : b;
    }
    bytes.set(utf8.encode(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
    expect(decodeHeader(bytes)?.path).toBe('caf\u00e9');
  });

  it('splits a path of 101-255 bytes into prefix and name without PAX', () => {
    const dir = `${'d'.repeat(120)}/sub`;
    const path = `${dir}/${'n'.repeat(90)}`;
    const bytes = encodeHeader(fileHeader(path, 0));
    expect(bytes.length).toBe(BLOCK_SIZE);
    expect(field(bytes, 0, 90)).toBe('n'.repeat(90));
    expect(field(bytes, 345, dir.length)).toBe(dir);
    expect(decodeHeader(bytes)?.path).toBe(path);
  });

  it("keeps a directory's trailing slash in the name part when splitting", () => {
    const path = `${'p'.repeat(150)}/${'q'.repeat(60)}/`;
    const bytes = encodeHeader(dirHeader(path));
    expect(bytes.length).toBe(BLOCK_SIZE);
    expect(decodeHeader(bytes)).toEqual(dirHeader(path));
  });

  it('uses a PAX path record for a 300-byte path that cannot be split', async () => {
    const path = `top/${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(94)}`;
    expect(path.length).toBe(300);
    const bytes = encodeHeader(fileHeader(path, 0));
    expect(bytes.length).toBe(3 * BLOCK_SIZE);
    expect(paxOf(bytes)).toEqual({ path });
    // The 'x' header's own name: "PaxHeaders.0/<base>" when "<dir>/PaxHeaders.0/<base>" cannot fit.
    expect(decodeHeader(bytes.subarray(0, BLOCK_SIZE))?.path).toBe(`PaxHeaders.0/${'c'.repeat(87)}`);
    expect(decodeHeader(encodeHeader(fileHeader(`a/b/\u00e9${'x'.repeat(80)}`, 0)).subarray(0, BLOCK_SIZE))?.path).toBe(
      `a/b/PaxHeaders.0/_${'x'.repeat(80)}`,
    );
    expect(await readOne(bytes)).toEqual(fileHeader(path, 0, { pax: { path } }));
  });

  it('uses PAX for a name whose final component is over 100 bytes', async () => {
    const path = `dir/${'x'.repeat(120)}`;
    const bytes = encodeHeader(fileHeader(path, 0));
    expect(paxOf(bytes)).toEqual({ path });
    expect((await readOne(bytes)).path).toBe(path);
  });

  it('uses PAX for UTF-8 names and keeps an ASCII fallback in the ustar block', async () => {
    const path = 'opt/\u65e5\u672c\u8a9e/\u{1f433}-caf\u00e9.txt';
    const bytes = encodeHeader(fileHeader(path, 3, { uname: '\u00fcser', linkname: undefined }));
    expect(paxOf(bytes)).toEqual({ path, uname: '\u00fcser' });
    const ustar = decodeHeader(bytes.subarray(bytes.length - BLOCK_SIZE))!;
    expect(ustar.path).toBe('opt/___/_-caf_.txt');
    expect(ustar.uname).toBe('_ser');
    const read = await collect(whole(concat(bytes, withData(utf8.encode('abc')), endOfArchive())));
    expect(read[0]!.header.path).toBe(path);
    expect(read[0]!.header.uname).toBe('\u00fcser');
    expect(text.decode(read[0]!.content)).toBe('abc');
  });

  it('uses PAX for a symlink target over 100 bytes or not ASCII', async () => {
    const target = `../${'t'.repeat(120)}`;
    const h: TarEntryHeader = { path: 'ln', type: TarEntryType.Symlink, size: 0, mode: 0o777, uid: 0, gid: 0, mtime: 0, linkname: target };
    const bytes = encodeHeader(h);
    expect(paxOf(bytes)).toEqual({ linkpath: target });
    expect(await readOne(bytes)).toEqual({ ...h, pax: { linkpath: target } });
    const short = encodeHeader({ ...h, linkname: '\u00e9' });
    expect(paxOf(short)).toEqual({ linkpath: '\u00e9' });
  });

  it('records a 9 GiB size in PAX ("size=9663676416") with 0 in the ustar field', async () => {
    const size = 9 * GiB;
    const bytes = encodeHeader(fileHeader('huge.bin', size));
    expect(bytes.length).toBe(3 * BLOCK_SIZE);
    const paxData = bytes.subarray(BLOCK_SIZE, BLOCK_SIZE + decodeHeader(bytes.subarray(0, BLOCK_SIZE))!.size);
    expect(text.decode(paxData)).toBe('19 size=9663676416\n');
    const ustar = bytes.subarray(2 * BLOCK_SIZE);
    expect(field(ustar, 124, 12)).toBe('00000000000\0');
    expect(decodeHeader(ustar)?.size).toBe(0);
    // The reader applies the record; the content is missing here, so reading on is a truncation.
    const iterator = readTar(whole(bytes))[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect((first.value as TarEntry).header.size).toBe(size);
    await expectTarError(iterator.next(), /truncated: entry "huge\.bin".* 0 of 9663676416 content bytes/);
  });

  it('keeps sizes just under 8 GiB in ustar', () => {
    const size = 8 * GiB - 1;
    const bytes = encodeHeader(fileHeader('edge.bin', size));
    expect(bytes.length).toBe(BLOCK_SIZE);
    expect(field(bytes, 124, 12)).toBe('77777777777\0');
    expect(decodeHeader(bytes)?.size).toBe(size);
    expect(paxOf(encodeHeader(fileHeader('edge.bin', 8 * GiB)))).toEqual({ size: String(8 * GiB) });
  });

  it('records ids over 0o7777777, long owner names and pre-1970 or fractional times in PAX', async () => {
    const h = fileHeader('f', 0, { uid: 3_000_000, gid: 2_097_152, uname: 'u'.repeat(32), gname: 'g'.repeat(31), mtime: -86400 });
    const bytes = encodeHeader(h);
    expect(paxOf(bytes)).toEqual({ uid: '3000000', gid: '2097152', uname: 'u'.repeat(32), mtime: '-86400' });
    expect(field(bytes.subarray(bytes.length - BLOCK_SIZE), 108, 8)).toBe('0000000\0');
    const read = await readOne(bytes);
    expect(read).toMatchObject({ uid: 3_000_000, gid: 2_097_152, uname: 'u'.repeat(32), gname: 'g'.repeat(31), mtime: -86400 });
    expect(paxOf(encodeHeader(fileHeader('f', 0, { mtime: 1.5 })))).toEqual({ mtime: '1.5' });
    expect(paxOf(encodeHeader(fileHeader('f', 0, { mtime: 1e-7 })))).toEqual({ mtime: '0.0000001' });
    expect(encodeHeader(fileHeader('f', 0, { uid: 0o7777777 })).length).toBe(BLOCK_SIZE);
  });

  it('emits caller PAX records sorted after the derived ones, derived keys recomputed', () => {
    const bytes = encodeHeader(
      fileHeader(`${'z'.repeat(101)}`, 0, {
        pax: { 'SCHILY.xattr.user.b': '2', 'SCHILY.xattr.user.a': '1', path: 'ignored', size: '5' },
      }),
    );
    expect(text.decode(bytes.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE)).replace(/\0+$/, '')).toBe(
      `111 path=${'z'.repeat(101)}\n25 SCHILY.xattr.user.a=1\n25 SCHILY.xattr.user.b=2\n`,
    );
  });

  it('is deterministic', () => {
    const h = fileHeader('\u00e9/'.repeat(80), 10 * GiB, { uid: 1e7, pax: { b: '1', a: '2' } });
    expect(encodeHeader(h)).toEqual(encodeHeader({ ...h, pax: { a: '2', b: '1' } }));
  });

  it('writes devices with major/minor numbers and other types with zeros', () => {
    const dev: TarEntryHeader = {
      path: 'dev/null',
      type: TarEntryType.CharDevice,
      size: 0,
      mode: 0o666,
      uid: 0,
      gid: 0,
      mtime: 0,
      devmajor: 1,
      devminor: 3,
    };
    const bytes = encodeHeader(dev);
    expect(field(bytes, 329, 16)).toBe('0000001\u00000000003\0');
    expect(decodeHeader(bytes)).toEqual(dev);
    const blk = { ...dev, path: 'dev/sda', type: TarEntryType.BlockDevice, devmajor: 8, devminor: 0 };
    expect(decodeHeader(encodeHeader(blk))).toEqual(blk);
    for (const type of [TarEntryType.Fifo, TarEntryType.Directory]) {
      const h = { ...dev, type };
      const { devmajor: _a, devminor: _b, ...rest } = h;
      expect(decodeHeader(encodeHeader(h))).toEqual(rest);
    }
  });

  it('round-trips hard links', () => {
    const h: TarEntryHeader = { path: 'b', type: TarEntryType.Hardlink, size: 0, mode: 0o644, uid: 0, gid: 0, mtime: 5, linkname: 'a' };
    expect(decodeHeader(encodeHeader(h))).toEqual(h);
  });

  it('rejects headers it cannot write', () => {
    expectTarThrow(() => encodeHeader(fileHeader('', 0)), /non-empty path/);
    expectTarThrow(() => encodeHeader(fileHeader('a\0b', 0)), /without NUL/);
    expectTarThrow(() => encodeHeader(fileHeader('a', -1)), /invalid size/);
    expectTarThrow(() => encodeHeader(fileHeader('a', 1.5)), /invalid size/);
    expectTarThrow(() => encodeHeader(fileHeader('a', 2 ** 53)), /invalid size/);
    expectTarThrow(() => encodeHeader(fileHeader('a', 0, { mode: 0o10000000 })), /invalid mode/);
    expectTarThrow(() => encodeHeader(fileHeader('a', 0, { mtime: Number.NaN })), /invalid mtime/);
    expectTarThrow(() => encodeHeader({ ...fileHeader('a', 0), type: TarEntryType.PaxExtended }), /writable types/);
    expectTarThrow(() => encodeHeader({ ...dirHeader('d/'), size: 1 }), /must have size 0/);
    expectTarThrow(() => encodeHeader({ ...dirHeader('l'), type: TarEntryType.Symlink }), /needs a linkname/);
    expectTarThrow(() => encodeHeader({ ...dirHeader('c'), type: TarEntryType.CharDevice, devmajor: 0o10000000 }), /invalid devmajor/);
    expectTarThrow(() => encodeHeader(fileHeader('a', 0, { pax: { 'a=b': 'c' } })), /Invalid PAX key/);
  });

  it('computes padding and the end-of-archive marker', () => {
    expect([0, 1, 511, 512, 513, 1024].map(paddingFor)).toEqual([0, 511, 1, 0, 511, 0]);
    expect(paddingFor(9 * GiB + 1)).toBe(511);
    const end = endOfArchive();
    expect(end.length).toBe(END_OF_ARCHIVE_SIZE);
    expect(end.every((b) => b === 0)).toBe(true);
    end[0] = 1;
    expect(endOfArchive()[0]).toBe(0);
  });
});

describe('tar header decoding', () => {
  it('returns null for a zero block and rejects other lengths', () => {
    expect(decodeHeader(new Uint8Array(BLOCK_SIZE))).toBeNull();
    expectTarThrow(() => decodeHeader(new Uint8Array(100)), /512 bytes/);
  });

  it('reads GNU base-256 numbers, positive and negative', () => {
    const block = encodeHeader(fileHeader('big', 0)).slice();
    // size 9 GiB as GNU writes it: 0x80 then big-endian bytes.
    block.fill(0, 124, 136);
    block[124] = 0x80;
    const size = 9 * GiB;
    for (let i = 0, v = size; i < 11; i++, v = Math.floor(v / 256)) block[135 - i] = v % 256;
    // mtime -1: all bytes 0xff.
    block.fill(0xff, 136, 148);
    const decoded = decodeHeader(resign(block))!;
    expect(decoded.size).toBe(size);
    expect(decoded.mtime).toBe(-1);
  });

  it('accepts octal fields with leading spaces and space terminators', () => {
    const block = encodeHeader(fileHeader('f', 0)).slice();
    block.set(utf8.encode('  644 \0\0'), 100);
    block.set(utf8.encode('         12 '), 124);
    expect(decodeHeader(resign(block))).toMatchObject({ mode: 0o644, size: 0o12 });
  });

  it('rejects a non-octal numeric field', () => {
    const block = encodeHeader(fileHeader('f', 0)).slice();
    block.set(utf8.encode('0000009\0'), 100);
    expectTarThrow(() => decodeHeader(resign(block)), /field mode .*not a valid octal/);
  });

  it('reads typeflag NUL as a file, or a directory when the name ends in "/"', () => {
    const file = encodeHeader(fileHeader('old', 0)).slice();
    file[156] = 0;
    expect(decodeHeader(resign(file))?.type).toBe(TarEntryType.File);
    const dir = encodeHeader(dirHeader('olddir/')).slice();
    dir[156] = 0;
    expect(decodeHeader(resign(dir))?.type).toBe(TarEntryType.Directory);
  });

  it('ignores the prefix area in GNU-magic headers (it holds atime/ctime there)', () => {
    const block = encodeHeader(fileHeader('name', 0)).slice();
    block.set(utf8.encode('ustar  \0'), 257);
    block.set(utf8.encode('14000000000'), 345);
    expect(decodeHeader(resign(block))?.path).toBe('name');
  });

  it('rejects GNU sparse entries clearly', () => {
    expectTarThrow(() => decodeHeader(rawBlock('sparse', 'S', 0)), /GNU sparse file, which is not supported/);
  });
});

describe('PAX records', () => {
  it('round-trips records whose length crosses digit boundaries, counting UTF-8 bytes', () => {
    for (let n = 0; n < 1100; n += 7) {
      const records = { k: 'v'.repeat(n), '\u00fc': '\u{1f433}'.repeat(n % 13) };
      const bytes = encodePax(records);
      expect(parsePax(bytes)).toEqual(records);
    }
    expect(text.decode(encodePax({ a: '' }))).toBe('5 a=\n');
    expect(text.decode(encodePax({ path: 'x'.repeat(90) }))).toBe(`99 path=${'x'.repeat(90)}\n`);
    expect(text.decode(encodePax({ path: 'x'.repeat(91) }))).toBe(`101 path=${'x'.repeat(91)}\n`);
    expect(text.decode(encodePax({ path: 'x'.repeat(92) }))).toBe(`102 path=${'x'.repeat(92)}\n`);
  });

  it('keeps the last of repeated keys and values containing "=" and newlines', () => {
    const bytes = concat(
      encodePax([
        ['a', '1'],
        ['a', '2'],
      ]),
      encodePax({ b: 'x=y\nz' }),
    );
    expect(parsePax(bytes)).toEqual({ a: '2', b: 'x=y\nz' });
  });

  it('rejects malformed records', () => {
    for (const bad of ['5 a=1', '7 a=1\n', 'x a=1\n', '6 a1\n\n', '6 =1\n\n', '3 a\n', '99 a=1\n']) {
      expectTarThrow(() => parsePax(utf8.encode(bad)), /Malformed PAX record/);
    }
  });

  it('is safe against prototype keys', () => {
    const parsed = parsePax(encodePax({ __proto__x: 'a', constructor: 'b' }));
    expect(parsed.constructor).toBe('b');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

const sampleEntries = (): { header: TarEntryHeader; content?: Uint8Array }[] => [
  { header: dirHeader('app/') },
  { header: fileHeader('app/empty', 0) },
  { header: fileHeader('app/one', 1), content: utf8.encode('1') },
  { header: fileHeader('app/block', 512), content: randomBytes(512, 1) },
  { header: fileHeader('app/big', 70_001), content: randomBytes(70_001, 2) },
  { header: fileHeader(`app/${'long/'.repeat(60)}end`, 5), content: utf8.encode('hello') },
  { header: fileHeader('app/\u00e9t\u00e9.txt', 3, { uid: 5_000_000 }), content: utf8.encode('\u00e9t') },
  { header: { path: 'app/link', type: TarEntryType.Symlink, size: 0, mode: 0o777, uid: 0, gid: 0, mtime: 0, linkname: 'one' } },
  { header: { path: 'app/hard', type: TarEntryType.Hardlink, size: 0, mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: 'app/one' } },
  { header: fileHeader('app/last', 1023), content: randomBytes(1023, 3) },
];

function expectSample(read: { header: TarEntryHeader; content: Uint8Array }[]): void {
  const expected = sampleEntries();
  expect(read.map((e) => e.header.path)).toEqual(expected.map((e) => e.header.path));
  read.forEach((entry, i) => {
    const { pax: _pax, ...header } = entry.header;
    expect(header).toEqual(expected[i]!.header);
    expect(entry.content).toEqual(expected[i]!.content ?? new Uint8Array(0));
  });
}

describe('tar writer plan', () => {
  it('builds a whole archive with tarBytes that reads back', async () => {
    const bytes = tarBytes(sampleEntries());
    expect(bytes.length % BLOCK_SIZE).toBe(0);
    expect(bytes.subarray(bytes.length - END_OF_ARCHIVE_SIZE).every((b) => b === 0)).toBe(true);
    expectSample(await collect(whole(bytes)));
  });

  it('keeps content references as parts, merges adjacent bytes and sizes exactly', async () => {
    const blobA = randomBytes(1000, 10);
    const blobB = randomBytes(4096, 11);
    const entries: TarPlanEntry[] = [
      { header: dirHeader('layers/') },
      { header: fileHeader('layers/a.tar', blobA.length), content: contentRef('sha256:a', blobA.length) },
      { header: fileHeader('layers/b.tar', blobB.length), content: contentRef('sha256:b', blobB.length) },
      { header: fileHeader('layers/empty', 0), content: contentRef('sha256:e', 0) },
      { header: fileHeader('manifest.json', 2), content: utf8.encode('[]') },
    ];
    const plan = planTar(entries);
    expect(plan.parts.map((p) => (p instanceof Uint8Array ? 'bytes' : p.key))).toEqual(['bytes', 'sha256:a', 'bytes', 'sha256:b', 'bytes']);
    expect((plan.parts[0] as Uint8Array).length).toBe(2 * BLOCK_SIZE);
    expect((plan.parts[2] as Uint8Array).length).toBe(paddingFor(1000) + BLOCK_SIZE);
    const blobs: Record<string, Uint8Array> = { 'sha256:a': blobA, 'sha256:b': blobB };
    const resolve = (p: ArchivePart): Uint8Array => (p instanceof Uint8Array ? p : blobs[p.key]!);
    const archive = concat(...plan.parts.map(resolve));
    expect(plan.size).toBe(archive.length);
    expect(plan.size).toBe(BLOCK_SIZE * 5 + 1024 + 4096 + BLOCK_SIZE + END_OF_ARCHIVE_SIZE);
    const read = await collect(whole(archive));
    expect(read.map((e) => [e.header.path, e.content.length])).toEqual([
      ['layers/', 0],
      ['layers/a.tar', 1000],
      ['layers/b.tar', 4096],
      ['layers/empty', 0],
      ['manifest.json', 2],
    ]);
    expect(read[1]!.content).toEqual(blobA);
    expect(read[2]!.content).toEqual(blobB);
  });

  it('sizes an empty archive as the end marker alone', () => {
    const plan = planTar([]);
    expect(plan.size).toBe(END_OF_ARCHIVE_SIZE);
    expect(plan.parts).toEqual([new Uint8Array(END_OF_ARCHIVE_SIZE)]);
  });

  it('sizes a 9 GiB content reference exactly without touching it', () => {
    const size = 9 * GiB + 3;
    const plan = planTar([{ header: fileHeader('big', size), content: contentRef('sha256:big', size) }]);
    expect(plan.size).toBe(3 * BLOCK_SIZE + size + paddingFor(size) + END_OF_ARCHIVE_SIZE);
    expect(plan.parts.reduce((n, p) => n + (p instanceof Uint8Array ? p.length : p.size), 0)).toBe(plan.size);
  });

  it('rejects content that does not match the header', () => {
    expectTarThrow(
      () => planTar([{ header: fileHeader('a', 3), content: utf8.encode('ab') }]),
      /header size 3 does not match content size 2/,
    );
    expectTarThrow(() => planTar([{ header: fileHeader('a', 3) }]), /header size 3 does not match content size 0/);
    expectTarThrow(() => planTar([{ header: fileHeader('a', 3), content: contentRef('k', 4) }]), /does not match/);
    expectTarThrow(() => planTar([{ header: dirHeader('d/'), content: utf8.encode('x') }]), /cannot have content/);
    expectTarThrow(() => planTar([{ header: fileHeader('a', 1), content: contentRef('', 1) }]), /invalid content reference/);
    expectTarThrow(() => tarBytes([{ header: fileHeader('a', 1), content: contentRef('k', 1) as unknown as Uint8Array }]), /use planTar/);
  });
});

describe('tar reader', () => {
  const archive = tarBytes(sampleEntries());

  it('reads entries across 1-byte chunks', async () => {
    expectSample(await collect(chunked(archive, () => 1)));
  });

  it('reads entries across random chunk sizes', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const next = prng(seed);
      expectSample(
        await collect(
          chunked(archive, () => 1 + Math.floor(next() * 2000)),
          seed % 2 ? 'body' : 'bytes',
        ),
      );
    }
  });

  it('reads entries across chunks at every block boundary ±1', async () => {
    const next = prng(99);
    expectSample(await collect(chunked(archive, () => BLOCK_SIZE + Math.floor(next() * 3) - 1)));
  });

  it('skips bodies that are not consumed, including half-read ones', async () => {
    const seen: [string, number][] = [];
    for await (const entry of readTar(chunked(archive, () => 300))) {
      if (entry.header.path === 'app/big') {
        const reader = entry.body().getReader();
        const first = await reader.read();
        seen.push([entry.header.path, first.value!.length]);
        continue; // advance with most of the body unread
      }
      if (entry.header.path === 'app/last') {
        await entry.skip();
        await entry.skip();
        seen.push([entry.header.path, -1]);
        continue;
      }
      seen.push([entry.header.path, entry.header.size]);
    }
    expect(seen.map((s) => s[0])).toEqual(sampleEntries().map((e) => e.header.path));
    expect(seen.find((s) => s[0] === 'app/big')![1]).toBeGreaterThan(0);
  });

  it('refuses to read a body after the iterator moved on, or twice', async () => {
    const entries: TarEntry[] = [];
    for await (const entry of readTar(whole(archive))) {
      if (entry.header.path === 'app/one') {
        entry.body();
        expect(() => entry.body()).toThrow(/already read with body\(\)/);
        await expectTarError(entry.bytes(), /already read/);
      }
      entries.push(entry);
    }
    const one = entries.find((e) => e.header.path === 'app/one')!;
    const big = entries.find((e) => e.header.path === 'app/big')!;
    expectTarThrow(() => big.body(), /moved past it/);
    await expectTarError(big.bytes(), /moved past it/);
    await big.skip();
    expect(one).toBeDefined();
  });

  it('errors a held body stream once the iterator has moved past it', async () => {
    const iterator = readTar(chunked(archive, () => 1000))[Symbol.asyncIterator]();
    let entry = (await iterator.next()).value as TarEntry;
    while (entry.header.path !== 'app/big') entry = (await iterator.next()).value as TarEntry;
    const body = entry.body().getReader();
    await body.read();
    await iterator.next();
    await expectTarError(body.read(), /moved past it/);
    await iterator.return(undefined);
  });

  it('errors a held body stream whose rest was skipped', async () => {
    for await (const entry of readTar(chunked(archive, () => 1000))) {
      if (entry.header.path !== 'app/big') continue;
      const body = entry.body().getReader();
      await body.read();
      await entry.skip();
      await expectTarError(body.read(), /is gone: it was skipped/);
    }
  });

  it('orders concurrent body reads and advancing', async () => {
    const contents: Uint8Array[] = [];
    for await (const entry of readTar(chunked(archive, () => 777))) {
      // Start reading without awaiting; advancing must wait for it.
      void entry.bytes().then((b) => contents.push(b));
    }
    expect(contents.map((c) => c.length)).toEqual(sampleEntries().map((e) => e.header.size));
  });

  it('ends at a clean end of stream without the end-of-archive marker', async () => {
    const bare = archive.subarray(0, archive.length - END_OF_ARCHIVE_SIZE);
    expectSample(await collect(chunked(bare, () => 100)));
    const oneZeroBlock = archive.subarray(0, archive.length - BLOCK_SIZE);
    expectSample(await collect(whole(oneZeroBlock)));
  });

  it("tolerates a stream that ends inside the last entry's padding", async () => {
    const bare = archive.subarray(0, archive.length - END_OF_ARCHIVE_SIZE - 1);
    expectSample(await collect(whole(bare)));
  });

  it('reads an empty stream and a bare end marker as no entries', async () => {
    expect(await collect(whole(new Uint8Array(0)))).toEqual([]);
    expect(await collect(whole(endOfArchive()))).toEqual([]);
  });

  it('drains the stream after the end marker (record padding) so upstream verifiers finish', async () => {
    const padded = concat(archive, new Uint8Array(10240));
    const stream = chunked(padded, () => 4096);
    expectSample(await collect(stream));
    expect(stream.pulledToEnd()).toBe(true);
    expect(stream.cancelled()).toBe(false);
  });

  it('cancels the stream when the caller stops early', async () => {
    const stream = chunked(archive, () => 512);
    for await (const entry of readTar(stream)) {
      if (entry.header.path === 'app/one') break;
    }
    expect(stream.cancelled()).toBe(true);
  });

  it("reports a stream truncated inside an entry's content", async () => {
    const cut = archive.subarray(0, 7 * BLOCK_SIZE + 1000); // app/big's content starts at block 7
    const err = await expectTarError(
      collect(chunked(cut, () => 333)),
      /Tar archive is truncated: entry "app\/big" \(header at byte offset \d+\) has \d+ of 70001 content bytes/,
    );
    expect(err.data).toMatchObject({ path: 'app/big', expected: 70_001 });
    // Also when the caller skips rather than reads.
    await expectTarError(
      (async () => {
        for await (const _ of readTar(whole(cut))) {
          /* skip all */
        }
      })(),
      /truncated: entry "app\/big"/,
    );
  });

  it('reports a stream truncated inside a header', async () => {
    await expectTarError(
      collect(whole(archive.subarray(0, BLOCK_SIZE + 100))),
      /ends inside a header at byte offset 512 \(100 of 512 bytes\)/,
    );
  });

  it('reports a stream truncated after a PAX header', async () => {
    const bytes = encodeHeader(fileHeader('x'.repeat(200), 0));
    await expectTarError(collect(whole(bytes.subarray(0, 2 * BLOCK_SIZE))), /ends after an extended header/);
    await expectTarError(collect(whole(bytes.subarray(0, BLOCK_SIZE + 10))), /PAX extended header at byte offset 0 has 10 of/);
  });

  it('reports a bad checksum with the offset', async () => {
    const bad = archive.slice();
    bad[BLOCK_SIZE * 4 + 10] = bad[BLOCK_SIZE * 4 + 10]! ^ 1; // the header of app/block
    await expectTarError(collect(whole(bad)), /checksum mismatch at byte offset 2048/);
  });

  it('reports a lone zero block followed by data', async () => {
    const bytes = concat(new Uint8Array(BLOCK_SIZE), archive);
    await expectTarError(collect(whole(bytes)), /lone zero block at byte offset 0/);
  });

  it('limits PAX header size, naming the limit', async () => {
    const bytes = tarBytes([{ header: fileHeader('f', 0, { pax: { comment: 'c'.repeat(5000) } }) }]);
    await expectTarError(
      (async () => {
        for await (const _ of readTar(whole(bytes), { maxPaxBytes: 4096 })) {
          /* read */
        }
      })(),
      /PAX extended header at byte offset 0 is 5014 bytes, over the limit of 4096 bytes \(maxPaxBytes\)/,
    );
    expect((await collect(whole(bytes)))[0]!.header.pax).toEqual({ comment: 'c'.repeat(5000) });
    // The default limit is 1 MiB.
    const huge = tarBytes([{ header: fileHeader('f', 0, { pax: { comment: 'c'.repeat(1024 * 1024) } }) }]);
    await expectTarError(collect(whole(huge)), /over the limit of 1048576 bytes/);
    expect(() => readTar(whole(bytes), { maxPaxBytes: -1 })).toThrow(/maxPaxBytes/);
  });

  it('applies global PAX headers to later entries, overridden by extended ones', async () => {
    const global = encodePax({ uname: 'globaluser', comment: 'g', mtime: '123' });
    const bytes = concat(
      rawBlock('pax_global_header', 'g', global.length),
      withData(global),
      encodeHeader(fileHeader('a', 0)),
      encodeHeader(fileHeader('b', 0, { uname: 'own', pax: { comment: '' } })),
      ((): Uint8Array => {
        const clear = encodePax({ comment: '' });
        return concat(rawBlock('g2', 'g', clear.length), withData(clear));
      })(),
      encodeHeader(fileHeader('c', 0)),
      endOfArchive(),
    );
    const read = await collect(chunked(bytes, () => 7));
    // Global records set the standard fields only; others (comment) are not copied into each entry.
    expect(read.map((e) => [e.header.path, e.header.uname, e.header.mtime, e.header.pax?.comment])).toEqual([
      ['a', 'globaluser', 123, undefined],
      ['b', 'globaluser', 123, undefined],
      ['c', 'globaluser', 123, undefined],
    ]);
  });

  it('reads GNU long names and long link targets', async () => {
    const longName = `gnu/${'n'.repeat(150)}/${'m'.repeat(150)}`;
    const longLink = `target/${'t'.repeat(200)}`;
    const nameData = utf8.encode(`${longName}\0`);
    const linkData = utf8.encode(`${longLink}\0`);
    const link: TarEntryHeader = {
      path: 'short',
      type: TarEntryType.Symlink,
      size: 0,
      mode: 0o777,
      uid: 0,
      gid: 0,
      mtime: 0,
      linkname: 'x',
    };
    const bytes = concat(
      rawBlock('././@LongLink', 'L', nameData.length),
      withData(nameData),
      rawBlock('././@LongLink', 'K', linkData.length),
      withData(linkData),
      encodeHeader(link),
      rawBlock('././@LongLink', 'L', nameData.length),
      withData(nameData),
      encodeHeader(fileHeader('short2', 4)),
      withData(utf8.encode('data')),
      endOfArchive(),
    );
    const read = await collect(chunked(bytes, () => 1));
    expect(read[0]!.header).toEqual({ ...link, path: longName, linkname: longLink });
    expect(read[1]!.header.path).toBe(longName);
    expect(text.decode(read[1]!.content)).toBe('data');
    await expectTarError(
      (async () => {
        for await (const _ of readTar(whole(bytes), { maxPaxBytes: 100 })) {
          /* read */
        }
      })(),
      /GNU long name at byte offset 0 is 306 bytes, over the limit of 100 bytes/,
    );
  });

  it('treats header-only types as having no content whatever their size field says', async () => {
    const dir = encodeHeader(dirHeader('d/')).slice();
    dir.set(utf8.encode('00000001000\0'), 124);
    const bytes = concat(resign(dir), encodeHeader(fileHeader('f', 1)), withData(utf8.encode('z')), endOfArchive());
    const read = await collect(whole(bytes));
    expect(read.map((e) => [e.header.path, e.header.size, text.decode(e.content)])).toEqual([
      ['d/', 0, ''],
      ['f', 1, 'z'],
    ]);
  });

  it('stops with an Aborted error when the signal fires', async () => {
    const controller = new AbortController();
    const pending = (async () => {
      for await (const entry of readTar(
        chunked(archive, () => 64),
        { signal: controller.signal },
      )) {
        if (entry.header.path === 'app/big') {
          const reader = entry.body().getReader();
          await reader.read();
          controller.abort();
          await reader.read();
        }
      }
    })();
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as LongshoreError).code).toBe(ErrorCode.Aborted);

    const aborted = AbortSignal.abort();
    const iterator = readTar(whole(archive), { signal: aborted });
    const first = await iterator.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((first as LongshoreError).code).toBe(ErrorCode.Aborted);
  });

  it('rejects a non-stream argument at the edge', () => {
    expectTarThrow(() => readTar(archive as unknown as ReadableStream<Uint8Array>), /expects a ReadableStream/);
  });
});
