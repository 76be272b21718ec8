// The merged filesystem: layers applied bottom-up as OCI image-spec layer.md "Applying Changesets"
// says. In each layer its whiteouts and opaque markers are applied first (they only touch lower
// layers, "regardless of the ordering in which the whiteout file was encountered"), then its
// entries in tar order: a directory over a directory takes its attributes and keeps the children;
// anything else replaces the path whole (a non-directory over a directory drops the subtree).
import { EntryKind, type ListingEntry, type ListingIssue } from './entry.ts';

/** Where an entry (or a hardlink's content) lives: a layer and the entry's ordinal in its tar. */
export interface EntrySource {
  layer: number;
  ordinal: number;
  path: string;
}

export interface MergedEntry {
  path: string;
  entry: ListingEntry;
  /** The layer the entry comes from; -1 for a directory no layer declares (an implied parent). */
  layer: number;
  /** Lower layers whose entries at this path it replaces, bottom first. */
  overrides: number[];
  /** Parent directory no layer has an entry for. */
  implicit?: boolean;
  /** Hardlinks: the entry whose content the link shares (followed through chains). */
  linkSource?: EntrySource;
}

/** What a layer changes relative to the layers below it. */
export interface LayerChanges {
  /** Entries at paths the lower layers do not have. */
  added: number;
  /** Entries replacing a lower entry (directories only when mode or owner differ). */
  changed: number;
  /** Lower entries removed: by whiteouts, opaque markers, or a non-directory replacing a directory. */
  deleted: number;
  /** Directories re-declared with the same mode and owner. */
  unchangedDirs: number;
  addedBytes: number;
  changedBytes: number;
  /** Bytes of lower regular files this layer removes or replaces. */
  removedBytes: number;
}

/** What one whiteout or opaque marker did. */
export interface WhiteoutEffect {
  ordinal: number;
  kind: 'whiteout' | 'opaque';
  target: string;
  /** Lower entries it removed (a whole subtree counts every entry). */
  removed: number;
  removedBytes: number;
  /** Layers the removed entries came from. */
  fromLayers: number[];
}

export interface MergedFilesystem {
  /** Every path of the final filesystem, in path order (depth first, names by code unit). */
  entries: MergedEntry[];
  changes: LayerChanges[];
  /** Per layer: what each whiteout / opaque marker did, by ordinal. */
  whiteouts: Map<number, WhiteoutEffect>[];
  /** Per layer: the content source of each hardlink entry, by ordinal (resolved where it was applied). */
  hardlinkSources: Map<number, EntrySource>[];
  issues: ListingIssue[];
}

interface Node {
  name: string;
  children?: Map<string, Node>;
  entry?: ListingEntry;
  layer: number;
  overrides: number[];
  linkSource?: EntrySource;
}

function emptyChanges(): LayerChanges {
  return { added: 0, changed: 0, deleted: 0, unchangedDirs: 0, addedBytes: 0, changedBytes: 0, removedBytes: 0 };
}

function isDir(node: Node): boolean {
  return node.children !== undefined;
}

const implicitDir = (name: string, layer: number): Node => ({ name, children: new Map(), layer, overrides: [] });

/** Count (and forget) a subtree's declared entries: the deletion bookkeeping. */
function tally(node: Node, into: { removed: number; removedBytes: number; fromLayers: Set<number> }): void {
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.entry) {
      into.removed++;
      if (n.entry.kind === EntryKind.File) into.removedBytes += n.entry.size;
      into.fromLayers.add(n.layer);
    }
    if (n.children) for (const c of n.children.values()) stack.push(c);
  }
}

function lookup(root: Node, path: string): { parent: Node; node: Node | undefined; name: string } | undefined {
  if (path === '') return undefined;
  const parts = path.split('/');
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const next = dir.children?.get(parts[i]!);
    if (!next || !isDir(next)) return undefined;
    dir = next;
  }
  const name = parts[parts.length - 1]!;
  return { parent: dir, node: dir.children?.get(name), name };
}

function sameAttributes(a: ListingEntry, b: ListingEntry): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid;
}

/** Apply layers (bottom first) and return the final filesystem with per-layer bookkeeping. */
export function mergeLayers(layers: readonly (readonly ListingEntry[])[]): MergedFilesystem {
  const root: Node = implicitDir('', -1);
  const changes: LayerChanges[] = [];
  const whiteouts: Map<number, WhiteoutEffect>[] = [];
  const hardlinkSources: Map<number, EntrySource>[] = [];
  const issues: ListingIssue[] = [];

  layers.forEach((entries, layer) => {
    const c = emptyChanges();
    const effects = new Map<number, WhiteoutEffect>();
    const links = new Map<number, EntrySource>();
    changes.push(c);
    whiteouts.push(effects);
    hardlinkSources.push(links);

    // Pass 1: whiteouts and opaque markers, against the lower layers only.
    for (const e of entries) {
      if (e.kind !== EntryKind.Whiteout && e.kind !== EntryKind.Opaque) continue;
      const acc = { removed: 0, removedBytes: 0, fromLayers: new Set<number>() };
      const target = e.whiteout ?? '';
      if (e.kind === EntryKind.Whiteout) {
        const at = lookup(root, target);
        if (at?.node) {
          tally(at.node, acc);
          at.parent.children!.delete(at.name);
        }
      } else {
        const dir = target === '' ? root : lookup(root, target)?.node;
        if (dir?.children) {
          for (const child of dir.children.values()) tally(child, acc);
          dir.children.clear();
        }
      }
      c.deleted += acc.removed;
      c.removedBytes += acc.removedBytes;
      effects.set(e.ordinal, { ordinal: e.ordinal, kind: e.kind, target, removed: acc.removed, removedBytes: acc.removedBytes, fromLayers: [...acc.fromLayers].sort((a, b) => a - b) });
    }

    // Pass 2: everything else, in tar order.
    for (const e of entries) {
      if (e.kind === EntryKind.Whiteout || e.kind === EntryKind.Opaque) continue;
      if (e.path === '') {
        // The root directory's own entry ('./'): it has attributes, but nothing replaces the root.
        root.entry = e;
        root.layer = layer;
        continue;
      }
      const parts = e.path.split('/');
      let dir = root;
      for (let i = 0; i < parts.length - 1; i++) {
        const name = parts[i]!;
        let next = dir.children!.get(name);
        if (!next || !isDir(next)) {
          if (next) {
            const acc = { removed: 0, removedBytes: 0, fromLayers: new Set<number>() };
            tally(next, acc);
            c.deleted += acc.removed;
            c.removedBytes += acc.removedBytes;
          }
          next = implicitDir(name, layer);
          dir.children!.set(name, next);
        }
        dir = next;
      }
      const name = parts[parts.length - 1]!;
      const existing = dir.children!.get(name);
      const lower = existing !== undefined && existing.layer !== layer && existing.entry !== undefined;
      const node: Node = existing && isDir(existing) && e.kind === EntryKind.Dir ? existing : { name, layer, overrides: [] };
      if (existing) {
        if (existing.entry && existing.layer !== layer) node.overrides = [...existing.overrides, existing.layer];
        else node.overrides = existing.overrides;
        if (node !== existing) {
          // Replaced whole: the old entry and, for a directory, everything under it.
          const acc = { removed: 0, removedBytes: 0, fromLayers: new Set<number>() };
          tally(existing, acc);
          if (lower) {
            c.changed++;
            c.changedBytes += e.size;
            c.removedBytes += acc.removedBytes;
            c.deleted += acc.removed - 1;
          }
        } else if (lower) {
          if (sameAttributes(existing.entry!, e)) c.unchangedDirs++;
          else c.changed++;
        } else if (!existing.entry) {
          c.added++;
        }
      } else {
        c.added++;
        c.addedBytes += e.size;
      }
      node.entry = e;
      node.layer = layer;
      if (e.kind === EntryKind.Dir) node.children ??= new Map();
      else delete node.children;
      delete node.linkSource;
      if (e.kind === EntryKind.Hardlink) {
        const target = lookup(root, e.linkTarget ?? '')?.node;
        const usable = target?.entry && !isDir(target) && target !== node && (target.entry.kind !== EntryKind.Hardlink || target.linkSource);
        if (target?.entry && usable) {
          node.linkSource = target.linkSource ?? { layer: target.layer, ordinal: target.entry.ordinal, path: target.entry.path };
          links.set(e.ordinal, node.linkSource);
        } else {
          issues.push({ code: 'dangling-hardlink', path: e.path, ordinal: e.ordinal, message: `Layer ${layer + 1}: hardlink /${e.path} points at /${e.linkTarget}, which is not a file at that point.` });
        }
      }
      dir.children!.set(name, node);
    }
  });

  const out: MergedEntry[] = [];
  const walk = (dir: Node, prefix: string) => {
    const names = [...dir.children!.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const node = dir.children!.get(name)!;
      const path = prefix === '' ? name : `${prefix}/${name}`;
      const entry: ListingEntry = node.entry ?? { ordinal: -1, path, kind: EntryKind.Dir, size: 0, mode: 0o755, uid: 0, gid: 0, mtime: 0 };
      const merged: MergedEntry = { path, entry, layer: node.entry ? node.layer : -1, overrides: node.overrides };
      if (!node.entry) merged.implicit = true;
      if (node.linkSource) merged.linkSource = node.linkSource;
      out.push(merged);
      if (node.children) walk(node, path);
    }
  };
  walk(root, '');
  return { entries: out, changes, whiteouts, hardlinkSources, issues };
}
