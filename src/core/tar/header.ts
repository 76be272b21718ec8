// Tar headers: ustar (POSIX.1-2017 pax, "ustar Interchange Format") with a PAX extended header
// ('x') for whatever ustar cannot hold. Reading also accepts GNU long names and base-256 numbers.
import { concatBytes } from '../bytes.ts';
import { ErrorCode, LongshoreError } from '../errors.ts';

export const BLOCK_SIZE = 512;
/** Two zero blocks end an archive (pax spec, "ustar Interchange Format"). */
export const END_OF_ARCHIVE_SIZE = 2 * BLOCK_SIZE;

export const TarEntryType = Object.freeze({
  File: '0',
  Hardlink: '1',
  Symlink: '2',
  CharDevice: '3',
  BlockDevice: '4',
  Directory: '5',
  Fifo: '6',
  /** Read-only: PAX extended header for the next entry. */
  PaxExtended: 'x',
  /** Read-only: PAX global header for all following entries. */
  PaxGlobal: 'g',
  /** Read-only: GNU long name for the next entry. */
  GnuLongName: 'L',
  /** Read-only: GNU long link target for the next entry. */
  GnuLongLink: 'K',
} as const);
export type TarEntryType = (typeof TarEntryType)[keyof typeof TarEntryType];

export interface TarEntryHeader {
  path: string;
  type: TarEntryType;
  /** Content bytes; 0 for everything but regular files. */
  size: number;
  /** Permission bits including setuid/setgid/sticky (e.g. 0o4755). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch; fractional when a PAX header said so. */
  mtime: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /**
   * PAX records. On read: every record that applied to the entry (global and extended).
   * On write: extra records to emit (e.g. SCHILY.xattr.*); keys derived from the fields above
   * (path, linkpath, size, uid, gid, uname, gname, mtime) are recomputed from those fields.
   */
  pax?: Record<string, string>;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

// ustar field offsets and lengths (pax spec, "ustar Header Block").
const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;
type FieldName = keyof typeof F;

/** Largest value of an octal field of `length` bytes: length-1 digits and a NUL. */
const maxOctal = (length: number): number => 8 ** (length - 1) - 1;
const MAX_ID = maxOctal(8); // 0o7777777
const MAX_SIZE = maxOctal(12); // 8 GiB - 1
// GNU tar NUL-terminates uname/gname, so 31 bytes is what fits.
const MAX_OWNER_NAME = 31;

const WRITABLE_TYPES: ReadonlySet<string> = new Set([
  TarEntryType.File,
  TarEntryType.Hardlink,
  TarEntryType.Symlink,
  TarEntryType.CharDevice,
  TarEntryType.BlockDevice,
  TarEntryType.Directory,
  TarEntryType.Fifo,
]);

/** PAX keys whose value the encoder derives from header fields. */
const DERIVED_PAX_KEYS: ReadonlySet<string> = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime']);

export function tarError(message: string, data: Record<string, unknown> = {}, hint?: string): LongshoreError {
  return new LongshoreError(ErrorCode.Tar, message, {
    data,
    hint: hint ?? 'The tar data is malformed or uses a feature Longshore does not support.',
  });
}

/** Zero bytes needed after `size` content bytes to reach the next 512-byte block. */
export function paddingFor(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

/** A fresh end-of-archive marker (two zero blocks); fresh because a shared Uint8Array could be mutated. */
export function endOfArchive(): Uint8Array {
  return new Uint8Array(END_OF_ARCHIVE_SIZE);
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * The header block(s) for one entry: a PAX extended header (header + records + padding) when some
 * field does not fit ustar or `pax` carries extra records, then the ustar header. Deterministic.
 */
export function encodeHeader(h: TarEntryHeader): Uint8Array {
  validateForWrite(h);
  const records: [string, string][] = [];

  const pathBytes = utf8.encode(h.path);
  let name: Uint8Array;
  let prefix: Uint8Array;
  const split = isAscii(pathBytes) ? splitUstarPath(pathBytes) : null;
  if (split) {
    [prefix, name] = split;
  } else {
    records.push(['path', h.path]);
    const fallback = asciiFallback(h.path);
    [prefix, name] = splitUstarPath(fallback) ?? [new Uint8Array(0), fallback.subarray(0, F.name[1])];
  }

  let linkname: Uint8Array = new Uint8Array(0);
  if (h.linkname !== undefined && h.linkname !== '') {
    linkname = utf8.encode(h.linkname);
    if (!isAscii(linkname) || linkname.length > F.linkname[1]) {
      records.push(['linkpath', h.linkname]);
      linkname = asciiFallback(h.linkname).subarray(0, F.linkname[1]);
    }
  }

  // Numbers that do not fit go to PAX; the ustar field then holds 0, as Go's archive/tar does.
  const size = h.size <= MAX_SIZE ? h.size : (records.push(['size', String(h.size)]), 0);
  const uid = h.uid <= MAX_ID ? h.uid : (records.push(['uid', String(h.uid)]), 0);
  const gid = h.gid <= MAX_ID ? h.gid : (records.push(['gid', String(h.gid)]), 0);
  const uname = ownerName(h.uname, 'uname', records);
  const gname = ownerName(h.gname, 'gname', records);
  let mtime = h.mtime;
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > MAX_SIZE) {
    records.push(['mtime', formatPaxTime(mtime)]);
    mtime = Math.min(Math.max(Math.floor(mtime), 0), MAX_SIZE);
  }

  if (h.pax) {
    const extra = Object.keys(h.pax)
      .filter((k) => !DERIVED_PAX_KEYS.has(k))
      .sort();
    for (const key of extra) records.push([key, h.pax[key]!]);
  }

  const isDevice = h.type === TarEntryType.CharDevice || h.type === TarEntryType.BlockDevice;
  const ustar = writeUstar({
    name,
    prefix,
    linkname,
    uname,
    gname,
    size,
    uid,
    gid,
    mtime,
    mode: h.mode,
    typeflag: h.type,
    devmajor: isDevice ? (h.devmajor ?? 0) : 0,
    devminor: isDevice ? (h.devminor ?? 0) : 0,
  });
  if (records.length === 0) return ustar;

  const paxData = encodePax(records);
  const paxHeader = writeUstar({
    ...paxHeaderName(h.path),
    linkname: new Uint8Array(0),
    uname: new Uint8Array(0),
    gname: new Uint8Array(0),
    size: paxData.length,
    uid: 0,
    gid: 0,
    mtime,
    mode: 0o644,
    typeflag: TarEntryType.PaxExtended,
    devmajor: 0,
    devminor: 0,
  });
  const out = new Uint8Array(BLOCK_SIZE + paxData.length + paddingFor(paxData.length) + BLOCK_SIZE);
  out.set(paxHeader, 0);
  out.set(paxData, BLOCK_SIZE);
  out.set(ustar, out.length - BLOCK_SIZE);
  return out;
}

/** PAX records as "<length> <key>=<value>\n", length counting the whole record in bytes. */
export function encodePax(records: Iterable<readonly [string, string]> | Record<string, string>): Uint8Array {
  const list: Iterable<readonly [string, string]> =
    Symbol.iterator in records ? (records as Iterable<readonly [string, string]>) : Object.entries(records);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const [key, value] of list) {
    if (key === '' || key.includes('=') || key.includes('\0') || key.includes('\n')) {
      throw tarError(`Invalid PAX key ${JSON.stringify(key)}: it must be non-empty without "=", NUL or newline.`, { key });
    }
    const body = utf8.encode(` ${key}=${value}\n`);
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length = String(length).length + body.length;
    const record = new Uint8Array(length);
    record.set(utf8.encode(String(length)), 0);
    record.set(body, length - body.length);
    parts.push(record);
    total += length;
  }
  return concatBytes(parts, total);
}

function validateForWrite(h: TarEntryHeader): void {
  const where = { path: h?.path };
  if (typeof h !== 'object' || h === null) throw tarError('A tar header must be an object.');
  if (typeof h.path !== 'string' || h.path === '') throw tarError('A tar entry needs a non-empty path.', where);
  if (!WRITABLE_TYPES.has(h.type)) {
    throw tarError(`Tar entry "${h.path}" has type ${JSON.stringify(h.type)}; writable types are 0-6.`, { ...where, type: h.type });
  }
  const integer = (value: unknown, field: string, max: number): void => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
      throw tarError(`Tar entry "${h.path}" has an invalid ${field} ${String(value)}: expected an integer from 0 to ${max}.`, {
        ...where,
        field,
        value,
      });
    }
  };
  integer(h.size, 'size', Number.MAX_SAFE_INTEGER);
  integer(h.mode, 'mode', MAX_ID);
  integer(h.uid, 'uid', Number.MAX_SAFE_INTEGER);
  integer(h.gid, 'gid', Number.MAX_SAFE_INTEGER);
  // Device numbers have no standard PAX key, so they must fit ustar.
  if (h.devmajor !== undefined) integer(h.devmajor, 'devmajor', MAX_ID);
  if (h.devminor !== undefined) integer(h.devminor, 'devminor', MAX_ID);
  if (typeof h.mtime !== 'number' || !Number.isFinite(h.mtime) || Math.abs(h.mtime) >= 1e15) {
    throw tarError(`Tar entry "${h.path}" has an invalid mtime ${String(h.mtime)}.`, { ...where, value: h.mtime });
  }
  if (h.type !== TarEntryType.File && h.size !== 0) {
    throw tarError(`Tar entry "${h.path}" of type ${h.type} must have size 0, not ${h.size}.`, { ...where, size: h.size });
  }
  const isLink = h.type === TarEntryType.Hardlink || h.type === TarEntryType.Symlink;
  if (isLink && (typeof h.linkname !== 'string' || h.linkname === '')) {
    throw tarError(`Link entry "${h.path}" needs a linkname.`, where);
  }
  for (const field of ['path', 'linkname', 'uname', 'gname'] as const) {
    const value = h[field];
    if (value !== undefined && (typeof value !== 'string' || value.includes('\0'))) {
      throw tarError(`Tar entry "${h.path}" has an invalid ${field}: it must be a string without NUL.`, { ...where, field });
    }
  }
  if (h.pax !== undefined) {
    if (typeof h.pax !== 'object' || h.pax === null) throw tarError(`Tar entry "${h.path}" has invalid PAX records.`, where);
    for (const [key, value] of Object.entries(h.pax)) {
      if (typeof value !== 'string') throw tarError(`PAX record ${key} of "${h.path}" must be a string.`, { ...where, key });
    }
  }
}

/** Decimal seconds, never exponent notation (which PAX readers reject). */
function formatPaxTime(seconds: number): string {
  const text = String(seconds);
  return text.includes('e') ? seconds.toFixed(9).replace(/\.?0+$/, '') : text;
}

function ownerName(value: string | undefined, key: 'uname' | 'gname', records: [string, string][]): Uint8Array {
  if (value === undefined || value === '') return new Uint8Array(0);
  const bytes = utf8.encode(value);
  if (isAscii(bytes) && bytes.length <= MAX_OWNER_NAME) return bytes;
  records.push([key, value]);
  return asciiFallback(value).subarray(0, MAX_OWNER_NAME);
}

/**
 * Split a path longer than 100 bytes into prefix (≤155) and name (≤100) at a '/', as ustar allows;
 * null when impossible. Same rule as Go's archive/tar: the last usable '/', never a trailing one.
 */
function splitUstarPath(path: Uint8Array): [Uint8Array, Uint8Array] | null {
  if (path.length <= F.name[1]) return [new Uint8Array(0), path];
  let end = Math.min(path.length - 1, F.prefix[1] + 1);
  if (end === path.length - 1 && path[end] === 0x2f) end--;
  let slash = -1;
  for (let i = Math.min(end, F.prefix[1]); i > 0; i--) {
    if (path[i] === 0x2f) {
      slash = i;
      break;
    }
  }
  if (slash <= 0) return null;
  const nameLength = path.length - slash - 1;
  if (nameLength === 0 || nameLength > F.name[1]) return null;
  return [path.subarray(0, slash), path.subarray(slash + 1)];
}

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

/** What old readers that ignore PAX see: the string with non-ASCII characters replaced by '_'. */
function asciiFallback(value: string): Uint8Array {
  return utf8.encode(value.replace(/[^\x01-\x7f]/gu, '_'));
}

/**
 * The name of the 'x' header itself, "<dir>/PaxHeaders.0/<base>" like Go's archive/tar: stable
 * (GNU tar's default embeds its pid) and ignored by readers, which take the name from the records.
 */
function paxHeaderName(path: string): { prefix: Uint8Array; name: Uint8Array } {
  const trimmed = path.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  const base = `PaxHeaders.0/${trimmed.slice(slash + 1)}`;
  const split = splitUstarPath(asciiFallback(`${trimmed.slice(0, slash + 1)}${base}`));
  if (split) return { prefix: split[0], name: split[1] };
  return { prefix: new Uint8Array(0), name: asciiFallback(base).subarray(0, F.name[1]) };
}

interface UstarFields {
  name: Uint8Array;
  prefix: Uint8Array;
  linkname: Uint8Array;
  uname: Uint8Array;
  gname: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  devmajor: number;
  devminor: number;
}

function writeUstar(f: UstarFields): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE);
  const put = (field: FieldName, bytes: Uint8Array): void => block.set(bytes.subarray(0, F[field][1]), F[field][0]);
  // Octal fields: zero-padded digits then NUL, as GNU tar and Go write them.
  const octal = (field: FieldName, value: number): void => {
    const [offset, length] = F[field];
    const digits = value.toString(8).padStart(length - 1, '0');
    for (let i = 0; i < length - 1; i++) block[offset + i] = digits.charCodeAt(i);
  };
  put('name', f.name);
  octal('mode', f.mode);
  octal('uid', f.uid);
  octal('gid', f.gid);
  octal('size', f.size);
  octal('mtime', f.mtime);
  block[F.typeflag[0]] = f.typeflag.charCodeAt(0);
  put('linkname', f.linkname);
  put('magic', utf8.encode('ustar\0'));
  put('version', utf8.encode('00'));
  put('uname', f.uname);
  put('gname', f.gname);
  octal('devmajor', f.devmajor);
  octal('devminor', f.devminor);
  put('prefix', f.prefix);
  // Checksum: six octal digits, NUL, space (pax spec; what GNU tar writes).
  const sum = checksum(block);
  const digits = sum.toString(8).padStart(6, '0');
  for (let i = 0; i < 6; i++) block[F.chksum[0] + i] = digits.charCodeAt(i);
  block[F.chksum[0] + 6] = 0;
  block[F.chksum[0] + 7] = 0x20;
  return block;
}

/** Unsigned sum of the block with the checksum field counted as eight spaces. */
function checksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    sum += i >= F.chksum[0] && i < F.chksum[0] + F.chksum[1] ? 0x20 : block[i]!;
  }
  return sum;
}

/** Historic writers (old Sun tar) summed signed bytes; accept that too on read. */
function signedChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= F.chksum[0] && i < F.chksum[0] + F.chksum[1] ? 0x20 : block[i]!;
    sum += b >= 0x80 ? b - 0x100 : b;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * One 512-byte header block; null for a zero block (end-of-archive marker). PAX ('x', 'g') and GNU
 * ('L', 'K') headers are returned with their type so the caller can read their data.
 * Typeflag '\0' (and '7', contiguous file) reads as a file, or a directory when the name ends in '/'.
 * Unknown typeflags read as files, as the pax spec allows.
 */
export function decodeHeader(block: Uint8Array, offset?: number): TarEntryHeader | null {
  if (!(block instanceof Uint8Array) || block.length !== BLOCK_SIZE) {
    throw tarError(`A tar header block must be ${BLOCK_SIZE} bytes.`, { length: block?.length });
  }
  if (isZeroBlock(block)) return null;
  const at = offset === undefined ? '' : ` at byte offset ${offset}`;
  const where = offset === undefined ? {} : { offset };

  const stored = readNumber(block, 'chksum', at);
  if (stored !== checksum(block) && stored !== signedChecksum(block)) {
    throw tarError(
      `Tar header checksum mismatch${at}: stored ${stored}, computed ${checksum(block)}.`,
      { ...where, stored, computed: checksum(block) },
      'The archive is corrupt or is not a tar archive.',
    );
  }

  const magic = readString(block, 'magic');
  const version = String.fromCharCode(block[263]!, block[264]!);
  // POSIX says version "00"; some writers leave it blank, so the magic alone decides.
  const isUstar = magic === 'ustar';
  // GNU's old format: "ustar  \0"; its bytes 345.. hold atime/ctime, not a prefix.
  const isGnu = magic === 'ustar ' && version === ' \0';
  const hasOwnerFields = isUstar || isGnu;

  let path = readString(block, 'name');
  if (isUstar) {
    const prefix = readString(block, 'prefix');
    if (prefix !== '') path = `${prefix}/${path}`;
  }

  const flag = String.fromCharCode(block[F.typeflag[0]]!);
  let type: TarEntryType;
  if (flag === '\0') type = path.endsWith('/') ? TarEntryType.Directory : TarEntryType.File;
  else if (flag === '7') type = TarEntryType.File;
  else if (flag === 'S') {
    throw tarError(`Tar entry "${path}"${at} is a GNU sparse file, which is not supported.`, { ...where, path });
  } else if (Object.values(TarEntryType).includes(flag as TarEntryType)) type = flag as TarEntryType;
  else type = TarEntryType.File;

  const header: TarEntryHeader = {
    path,
    type,
    size: readNumber(block, 'size', at),
    mode: readNumber(block, 'mode', at),
    uid: readNumber(block, 'uid', at),
    gid: readNumber(block, 'gid', at),
    mtime: readNumber(block, 'mtime', at),
  };
  const linkname = readString(block, 'linkname');
  if (linkname !== '') header.linkname = linkname;
  if (hasOwnerFields) {
    const uname = readString(block, 'uname');
    const gname = readString(block, 'gname');
    if (uname !== '') header.uname = uname;
    if (gname !== '') header.gname = gname;
    if (type === TarEntryType.CharDevice || type === TarEntryType.BlockDevice) {
      header.devmajor = readNumber(block, 'devmajor', at);
      header.devminor = readNumber(block, 'devminor', at);
    }
  }
  return header;
}

function readString(block: Uint8Array, field: FieldName): string {
  const [offset, length] = F[field];
  let end = offset;
  while (end < offset + length && block[end] !== 0) end++;
  return utf8Decoder.decode(block.subarray(offset, end));
}

/** Octal (spaces/NULs around it allowed) or GNU base-256 (high bit set, two's complement). */
function readNumber(block: Uint8Array, field: FieldName, at: string): number {
  const [offset, length] = F[field];
  const bytes = block.subarray(offset, offset + length);
  if (bytes[0]! & 0x80) {
    const negative = (bytes[0]! & 0x40) !== 0;
    let value = 0;
    for (let i = 0; i < bytes.length; i++) {
      let b = negative ? bytes[i]! ^ 0xff : bytes[i]!;
      if (i === 0) b &= 0x7f;
      value = value * 256 + b;
      if (value > Number.MAX_SAFE_INTEGER) {
        throw tarError(`Tar header field ${field}${at} holds a base-256 number too large for this reader.`, { field });
      }
    }
    return negative ? -value - 1 : value;
  }
  let start = 0;
  let end = bytes.length;
  while (start < end && (bytes[start] === 0x20 || bytes[start] === 0)) start++;
  // A value ends at the first NUL or space; some writers fill the field to the end.
  let stop = start;
  while (stop < end && bytes[stop] !== 0 && bytes[stop] !== 0x20) stop++;
  for (let i = stop; i < end; i++) {
    if (bytes[i] !== 0 && bytes[i] !== 0x20) {
      throw tarError(`Tar header field ${field}${at} is not a valid octal number.`, { field });
    }
  }
  end = stop;
  let value = 0;
  for (let i = start; i < end; i++) {
    const b = bytes[i]!;
    if (b < 0x30 || b > 0x37) throw tarError(`Tar header field ${field}${at} is not a valid octal number.`, { field });
    value = value * 8 + (b - 0x30);
  }
  return value;
}

/**
 * Parse PAX extended header data: records "<length> <key>=<value>\n" (pax spec, "pax Extended
 * Header"). Later records win. An empty value is kept: it means "unset" to the caller.
 */
export function parsePax(bytes: Uint8Array): Record<string, string> {
  const records: Record<string, string> = Object.create(null) as Record<string, string>;
  let pos = 0;
  while (pos < bytes.length) {
    let space = pos;
    while (space < bytes.length && bytes[space]! >= 0x30 && bytes[space]! <= 0x39) space++;
    const length = Number(utf8Decoder.decode(bytes.subarray(pos, space)));
    const end = pos + length;
    if (space === pos || bytes[space] !== 0x20 || length <= space - pos + 1 || end > bytes.length || bytes[end - 1] !== 0x0a) {
      throw tarError(`Malformed PAX record at byte ${pos} of the extended header.`, { position: pos });
    }
    const record = bytes.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw tarError(`Malformed PAX record at byte ${pos} of the extended header: no key.`, { position: pos });
    records[utf8Decoder.decode(record.subarray(0, eq))] = utf8Decoder.decode(record.subarray(eq + 1));
    pos = end;
  }
  return records;
}

/**
 * Apply effective PAX records to a decoded header (pax spec, "pax Header Block": path, linkpath,
 * size, uid, gid, uname, gname, mtime). Records with empty values are ignored; all applied records
 * are kept in `header.pax`.
 */
export function applyPax(header: TarEntryHeader, records: Record<string, string>, offset?: number): void {
  const at = offset === undefined ? '' : ` at byte offset ${offset}`;
  const kept: Record<string, string> = Object.create(null) as Record<string, string>;
  let any = false;
  const integer = (key: string, value: string): number => {
    if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
      throw tarError(`PAX record ${key}=${JSON.stringify(value)}${at} is not a valid number.`, { key, value });
    }
    return Number(value);
  };
  for (const key of Object.keys(records)) {
    const value = records[key]!;
    if (value === '') continue;
    if (key.startsWith('GNU.sparse.')) {
      throw tarError(`Tar entry "${header.path}"${at} is a GNU sparse file, which is not supported.`, { path: header.path });
    }
    kept[key] = value;
    any = true;
    switch (key) {
      case 'path':
        header.path = value;
        break;
      case 'linkpath':
        header.linkname = value;
        break;
      case 'uname':
        header.uname = value;
        break;
      case 'gname':
        header.gname = value;
        break;
      case 'size':
        header.size = integer(key, value);
        break;
      case 'uid':
        header.uid = integer(key, value);
        break;
      case 'gid':
        header.gid = integer(key, value);
        break;
      case 'mtime':
        if (!/^-?\d{1,15}(\.\d+)?$/.test(value))
          throw tarError(`PAX record mtime=${JSON.stringify(value)}${at} is not a valid time.`, { key, value });
        header.mtime = Number(value);
        break;
    }
  }
  if (any) header.pax = kept;
}
