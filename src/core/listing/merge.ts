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

/** One layer being applied: the tree so far and where this layer's bookkeeping goes. */
interface LayerPass {
  root: Node;
  layer: number;
  changes: LayerChanges;
  effects: Map<number, WhiteoutEffect>;
  links: Map<number, EntrySource>;
  issues: ListingIssue[];
}

const newTally = () => ({ removed: 0, removedBytes: 0, fromLayers: new Set<number>() });

/** Apply layers (bottom first) and return the final filesystem with per-layer bookkeeping. */
export function mergeLayers(layers: readonly (readonly ListingEntry[])[]): MergedFilesystem {
  const root: Node = implicitDir('', -1);
  const merged: MergedFilesystem = { entries: [], changes: [], whiteouts: [], hardlinkSources: [], issues: [] };
  layers.forEach((entries, layer) => {
    const pass: LayerPass = { root, layer, changes: emptyChanges(), effects: new Map(), links: new Map(), issues: merged.issues };
    merged.changes.push(pass.changes);
    merged.whiteouts.push(pass.effects);
    merged.hardlinkSources.push(pass.links);
    // Whiteouts and opaque markers first, against the lower layers only; then the rest in tar order.
    for (const e of entries) if (isMarker(e)) applyMarker(pass, e);
    for (const e of entries) if (!isMarker(e)) applyEntry(pass, e);
  });
  merged.entries = flatten(root);
  return merged;
}

function isMarker(e: ListingEntry): boolean {
  return e.kind === EntryKind.Whiteout || e.kind === EntryKind.Opaque;
}

/** A whiteout deletes its target; an opaque marker empties its directory. */
function applyMarker(pass: LayerPass, e: ListingEntry): void {
  const acc = newTally();
  const target = e.whiteout ?? '';
  if (e.kind === EntryKind.Whiteout) {
    const at = lookup(pass.root, target);
    if (at?.node) {
      tally(at.node, acc);
      at.parent.children!.delete(at.name);
    }
  } else {
    const dir = target === '' ? pass.root : lookup(pass.root, target)?.node;
    if (dir?.children) {
      for (const child of dir.children.values()) tally(child, acc);
      dir.children.clear();
    }
  }
  pass.changes.deleted += acc.removed;
  pass.changes.removedBytes += acc.removedBytes;
  pass.effects.set(e.ordinal, {
    ordinal: e.ordinal,
    kind: e.kind as WhiteoutEffect['kind'],
    target,
    removed: acc.removed,
    removedBytes: acc.removedBytes,
    fromLayers: [...acc.fromLayers].sort((a, b) => a - b),
  });
}

/** The directory an entry goes in, made (implied) where missing; a non-directory in the way is replaced. */
function parentDir(pass: LayerPass, parts: readonly string[]): Node {
  let dir = pass.root;
  for (const name of parts.slice(0, -1)) {
    let next = dir.children!.get(name);
    if (!next || !isDir(next)) {
      if (next) {
        const acc = newTally();
        tally(next, acc);
        pass.changes.deleted += acc.removed;
        pass.changes.removedBytes += acc.removedBytes;
      }
      next = implicitDir(name, pass.layer);
      dir.children!.set(name, next);
    }
    dir = next;
  }
  return dir;
}

function applyEntry(pass: LayerPass, e: ListingEntry): void {
  if (e.path === '') {
    // The root directory's own entry ('./'): it has attributes, but nothing replaces the root.
    pass.root.entry = e;
    pass.root.layer = pass.layer;
    return;
  }
  const parts = e.path.split('/');
  const dir = parentDir(pass, parts);
  const name = parts[parts.length - 1]!;
  const existing = dir.children!.get(name);
  // A directory over a directory keeps its children; anything else replaces the path whole.
  const node: Node = existing && isDir(existing) && e.kind === EntryKind.Dir ? existing : { name, layer: pass.layer, overrides: [] };
  countChange(pass, e, existing, node);
  node.entry = e;
  node.layer = pass.layer;
  if (e.kind === EntryKind.Dir) node.children ??= new Map();
  else delete node.children;
  delete node.linkSource;
  if (e.kind === EntryKind.Hardlink) resolveHardlink(pass, e, node);
  dir.children!.set(name, node);
}

/** The layer's added / changed / deleted bookkeeping for `e` landing on `existing`. */
function countChange(pass: LayerPass, e: ListingEntry, existing: Node | undefined, node: Node): void {
  const c = pass.changes;
  if (!existing) {
    c.added++;
    c.addedBytes += e.size;
    return;
  }
  const lower = existing.layer !== pass.layer && existing.entry !== undefined;
  node.overrides = lower ? [...existing.overrides, existing.layer] : existing.overrides;
  if (node !== existing) {
    // Replaced whole: the old entry and, for a directory, everything under it.
    const acc = newTally();
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
}

/** A hardlink shares the content of the file its target is at this point (followed through chains). */
function resolveHardlink(pass: LayerPass, e: ListingEntry, node: Node): void {
  const target = lookup(pass.root, e.linkTarget ?? '')?.node;
  const usable = target?.entry && !isDir(target) && target !== node && (target.entry.kind !== EntryKind.Hardlink || target.linkSource);
  if (target?.entry && usable) {
    node.linkSource = target.linkSource ?? { layer: target.layer, ordinal: target.entry.ordinal, path: target.entry.path };
    pass.links.set(e.ordinal, node.linkSource);
    return;
  }
  pass.issues.push({
    code: 'dangling-hardlink',
    path: e.path,
    ordinal: e.ordinal,
    message: `Layer ${pass.layer + 1}: hardlink /${e.path} points at /${e.linkTarget}, which is not a file at that point.`,
  });
}

/** Every path of the tree in path order (depth first, names by code unit). */
function flatten(root: Node): MergedEntry[] {
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
  return out;
}
