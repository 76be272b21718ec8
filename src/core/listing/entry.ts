// One layer entry as the inspector shows it: a tar header turned into a clean path, a kind, a mode
// string and, for whiteouts (OCI image-spec layer.md "Whiteouts"), what the marker deletes.
import { TarEntryType, type TarEntryHeader } from '../tar/header.ts';

export const EntryKind = Object.freeze({
  File: 'file',
  Dir: 'dir',
  Symlink: 'symlink',
  Hardlink: 'hardlink',
  CharDevice: 'char',
  BlockDevice: 'block',
  Fifo: 'fifo',
  /** `.wh.<name>`: deletes <name> from the layers below. */
  Whiteout: 'whiteout',
  /** `.wh..wh..opq`: hides everything the layers below have in its directory. */
  Opaque: 'opaque',
} as const);
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface ListingEntry {
  /** Position of the entry in its layer's tar (every entry the tar reader yields counts). */
  ordinal: number;
  /** Clean relative path ('etc/passwd'); '' is the root directory. */
  path: string;
  kind: EntryKind;
  /** Content bytes (regular files only). */
  size: number;
  /** Permission bits with setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink: the link text as stored. Hardlink: the clean path of the entry it links to. */
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  /** Whiteout: the path it deletes. Opaque: the directory whose lower contents it hides. */
  whiteout?: string;
  /** The name as stored, only when it differs from `path` (absolute, `./`, `..`, trailing '/'). */
  rawPath?: string;
  /** Extended attributes (PAX `SCHILY.xattr.*` records), kept for the export. */
  xattrs?: Record<string, string>;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export type IssueCode =
  | 'absolute-path'
  | 'dot-dot'
  | 'unsafe-path'
  | 'unsafe-link'
  | 'control-characters'
  | 'reserved-whiteout'
  | 'dangling-hardlink'
  | 'limit'
  | 'truncated'
  | 'read-error';

export interface ListingIssue {
  code: IssueCode;
  /** The name as stored (or the clean path when it is clean). */
  path: string;
  ordinal?: number;
  message: string;
}

export type CleanPath = { ok: true; path: string; absolute: boolean; dotDot: boolean } | { ok: false; reason: string };

/**
 * Lexically clean a tar name: leading '/' and './' go, '.' and empty segments go, '..' pops a
 * segment. A name whose '..' climbs above the root cannot be placed safely and is refused.
 */
export function cleanPath(raw: string): CleanPath {
  const absolute = raw.startsWith('/');
  const out: string[] = [];
  let dotDot = false;
  for (const segment of raw.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      dotDot = true;
      if (out.length === 0) return { ok: false, reason: 'climbs above the root with ".."' };
      out.pop();
      continue;
    }
    out.push(segment);
  }
  return { ok: true, path: out.join('/'), absolute, dotDot };
}

// C0 controls and DEL; anything a terminal or a careless UI could act on.
const CONTROL = /[\u0000-\u001f\u007f]/;

export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}

/** A name with control characters shown as escapes (`\n`, `\t`, `\x1b`) and backslashes doubled. */
export function visibleName(text: string): string {
  if (!CONTROL.test(text)) return text;
  return text.replace(/[\u0000-\u001f\u007f\\]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\';
      case '\n':
        return '\\n';
      case '\t':
        return '\\t';
      case '\r':
        return '\\r';
      default:
        return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    }
  });
}

const TYPE_CHAR: Record<EntryKind, string> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  hardlink: 'h',
  char: 'c',
  block: 'b',
  fifo: 'p',
  whiteout: '-',
  opaque: '-',
};

/** `ls -l` style: type, then rwx for owner, group and others with s/S, s/S and t/T (GNU tar prints hardlinks with 'h'). */
export function modeString(kind: EntryKind, mode: number): string {
  const bit = (mask: number, c: string) => (mode & mask ? c : '-');
  const special = (exec: number, flag: number, on: string, off: string) => (mode & flag ? (mode & exec ? on : off) : bit(exec, 'x'));
  return (
    TYPE_CHAR[kind] +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    special(0o100, 0o4000, 's', 'S') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    special(0o010, 0o2000, 's', 'S') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    special(0o001, 0o1000, 't', 'T')
  );
}

const KIND_OF: Record<string, EntryKind> = {
  [TarEntryType.File]: EntryKind.File,
  [TarEntryType.Directory]: EntryKind.Dir,
  [TarEntryType.Symlink]: EntryKind.Symlink,
  [TarEntryType.Hardlink]: EntryKind.Hardlink,
  [TarEntryType.CharDevice]: EntryKind.CharDevice,
  [TarEntryType.BlockDevice]: EntryKind.BlockDevice,
  [TarEntryType.Fifo]: EntryKind.Fifo,
};

/**
 * Turn a tar header into a listing entry, or explain why it was dropped. Issues about names that
 * were kept (absolute, '..', control characters) are returned with the entry.
 */
export function entryFromHeader(header: TarEntryHeader, ordinal: number): { entry?: ListingEntry; issues: ListingIssue[] } {
  const issues: ListingIssue[] = [];
  const raw = header.path;
  const clean = cleanPath(raw);
  if (!clean.ok) {
    issues.push({ code: 'unsafe-path', path: raw, ordinal, message: `Dropped "${visibleName(raw)}": the name ${clean.reason}.` });
    return { issues };
  }
  const path = clean.path;
  if (clean.absolute)
    issues.push({
      code: 'absolute-path',
      path: raw,
      ordinal,
      message: `"${visibleName(raw)}" is absolute; read as "/${visibleName(path)}".`,
    });
  if (clean.dotDot)
    issues.push({
      code: 'dot-dot',
      path: raw,
      ordinal,
      message: `"${visibleName(raw)}" has ".." segments; read as "/${visibleName(path)}".`,
    });
  if (hasControlCharacters(raw))
    issues.push({ code: 'control-characters', path: raw, ordinal, message: `"${visibleName(raw)}" has control characters in its name.` });

  let kind: EntryKind = KIND_OF[header.type] ?? EntryKind.File;
  const entry: ListingEntry = {
    ordinal,
    path,
    kind,
    size: kind === EntryKind.File ? header.size : 0,
    mode: header.mode & 0o7777,
    uid: header.uid,
    gid: header.gid,
    mtime: header.mtime,
  };
  if (header.uname) entry.uname = header.uname;
  if (header.gname) entry.gname = header.gname;
  if (header.devmajor !== undefined && (kind === EntryKind.CharDevice || kind === EntryKind.BlockDevice)) {
    entry.devMajor = header.devmajor;
    entry.devMinor = header.devminor ?? 0;
  }
  if (raw !== path) entry.rawPath = raw;
  if (header.pax) {
    for (const [key, value] of Object.entries(header.pax)) {
      if (key.startsWith('SCHILY.xattr.') || key.startsWith('LIBARCHIVE.xattr.')) (entry.xattrs ??= {})[key] = value;
    }
  }

  if (kind === EntryKind.Symlink) entry.linkTarget = header.linkname ?? '';
  if (kind === EntryKind.Hardlink) {
    const target = cleanPath(header.linkname ?? '');
    if (!target.ok || target.path === '') {
      const why = target.ok ? 'points at the root' : target.reason;
      issues.push({
        code: 'unsafe-link',
        path: raw,
        ordinal,
        message: `Dropped hardlink "${visibleName(raw)}" → "${visibleName(header.linkname ?? '')}": the target ${why}.`,
      });
      return { issues };
    }
    entry.linkTarget = target.path;
  }

  // Whiteouts are recognised by name whatever their type (OCI image-spec layer.md "Whiteouts").
  const slash = path.lastIndexOf('/');
  const base = path.slice(slash + 1);
  if (base.startsWith(WHITEOUT_PREFIX)) {
    const dir = slash < 0 ? '' : path.slice(0, slash);
    if (base === OPAQUE_MARKER) {
      kind = EntryKind.Opaque;
      entry.whiteout = dir;
    } else if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
      // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): reserved names with no meaning in an image.
      issues.push({
        code: 'reserved-whiteout',
        path: raw,
        ordinal,
        message: `"${visibleName(raw)}" is a reserved whiteout name (AUFS metadata); ignored.`,
      });
      return { issues };
    } else {
      const name = base.slice(WHITEOUT_PREFIX.length);
      if (name === '.' || name === '..') {
        issues.push({ code: 'unsafe-path', path: raw, ordinal, message: `Dropped whiteout "${visibleName(raw)}": it names "${name}".` });
        return { issues };
      }
      kind = EntryKind.Whiteout;
      entry.whiteout = dir === '' ? name : `${dir}/${name}`;
    }
    entry.kind = kind;
    entry.size = 0;
    delete entry.linkTarget;
  }
  return { entry, issues };
}

export interface LayerTotals {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  devices: number;
  whiteouts: number;
  opaques: number;
  /** Sum of regular file sizes. */
  bytes: number;
}

export function emptyTotals(): LayerTotals {
  return { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, devices: 0, whiteouts: 0, opaques: 0, bytes: 0 };
}

export function countEntry(totals: LayerTotals, entry: ListingEntry): void {
  totals.entries++;
  switch (entry.kind) {
    case 'file':
      totals.files++;
      totals.bytes += entry.size;
      break;
    case 'dir':
      totals.dirs++;
      break;
    case 'symlink':
      totals.symlinks++;
      break;
    case 'hardlink':
      totals.hardlinks++;
      break;
    case 'char':
    case 'block':
    case 'fifo':
      totals.devices++;
      break;
    case 'whiteout':
      totals.whiteouts++;
      break;
    case 'opaque':
      totals.opaques++;
      break;
  }
}

/** What a whiteout or opaque marker means, in words. */
export function explainWhiteout(entry: Pick<ListingEntry, 'kind' | 'whiteout'>): string | undefined {
  if (entry.kind === EntryKind.Whiteout) return `deletes /${entry.whiteout}`;
  if (entry.kind === EntryKind.Opaque) return `opaque: hides lower contents of /${entry.whiteout}`;
  return undefined;
}
