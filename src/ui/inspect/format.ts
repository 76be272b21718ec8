// How entries read on screen: escaped names, modes, owners, times, sizes, and whiteouts in words.
import { EntryKind, modeString, visibleName, type ViewItem, type ViewRow } from '../../core/listing/index.ts';
import { formatBytes } from '../state/format-bytes.ts';

export { formatBytes, visibleName };

export function rowMode(row: ViewRow): string {
  return row.item ? modeString(row.item.entry.kind, row.item.entry.mode) : 'd?????????';
}

export function rowOwner(row: ViewRow): string {
  const e = row.item?.entry;
  if (!e) return '';
  return `${e.uname ?? e.uid}/${e.gname ?? e.gid}`;
}

export function rowTime(row: ViewRow): string {
  const e = row.item?.entry;
  if (!e) return '';
  return new Date(e.mtime * 1000).toISOString().slice(0, 16).replace('T', ' ');
}

export function rowSize(row: ViewRow): string {
  const e = row.item?.entry;
  if (e && (e.kind === EntryKind.CharDevice || e.kind === EntryKind.BlockDevice)) return `${e.devMajor},${e.devMinor}`;
  if (row.isDir && row.totals) return `${formatBytes(row.totals.bytes)} · ${row.totals.entries}`;
  return e ? formatBytes(e.size) : '';
}

export function layerName(layer: number): string {
  return layer < 0 ? 'implied' : `layer ${layer + 1}`;
}

/** The entry's kind in a few words, with its link target or device numbers. */
export function describeKind(item: ViewItem): string {
  const e = item.entry;
  switch (e.kind) {
    case 'symlink':
      return `symlink → ${visibleName(e.linkTarget ?? '')}`;
    case 'hardlink':
      return `hardlink → /${visibleName(e.linkTarget ?? '')}`;
    case 'char':
      return `character device ${e.devMajor},${e.devMinor}`;
    case 'block':
      return `block device ${e.devMajor},${e.devMinor}`;
    case 'fifo':
      return 'FIFO';
    case 'dir':
      return item.implicit ? 'directory (implied by its contents)' : 'directory';
    case 'whiteout':
    case 'opaque':
      return explain(item) ?? e.kind;
    default:
      return 'file';
  }
}

/** What a whiteout or opaque marker means and, once the merge knows, what it removed. */
export function explain(item: ViewItem): string | undefined {
  const e = item.entry;
  if (e.kind !== EntryKind.Whiteout && e.kind !== EntryKind.Opaque) return undefined;
  const target = `/${visibleName(e.whiteout ?? '')}`;
  const base = e.kind === EntryKind.Whiteout ? `whiteout: deletes ${target}` : `opaque: hides lower contents of ${target}`;
  const effect = item.whiteoutEffect;
  if (!effect) return base;
  if (effect.removed === 0) return `${base} (nothing there in the layers below)`;
  const from = effect.fromLayers.map((l) => l + 1).join(', ');
  return `${base} (${effect.removed} ${effect.removed === 1 ? 'entry' : 'entries'}, ${formatBytes(effect.removedBytes)}, from layer ${from})`;
}

export function overridesText(item: ViewItem): string | undefined {
  if (!item.overrides?.length) return undefined;
  return `overrides ${item.overrides.map((l) => `layer ${l + 1}`).join(', ')}`;
}
