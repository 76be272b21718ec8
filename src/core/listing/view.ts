// Queries over a listing, for a UI that shows only a window of rows: the entries as a flat table
// or as a tree (expanded directories only), filtered and sorted, with per-directory totals. Items
// may be added while a layer is still being read; answers reflect what has arrived.
import { EntryKind, type ListingEntry } from './entry.ts';
import { compileFilter } from './filter.ts';
import type { EntrySource, WhiteoutEffect } from './merge.ts';

export interface ViewItem {
  path: string;
  entry: ListingEntry;
  /** The layer the entry comes from (-1: implied directory). */
  layer: number;
  overrides?: number[];
  implicit?: boolean;
  linkSource?: EntrySource;
  whiteoutEffect?: WhiteoutEffect;
}

export type SortKey = 'order' | 'path' | 'name' | 'size' | 'mode' | 'owner' | 'mtime' | 'layer';

export interface ViewQuery {
  mode: 'flat' | 'tree';
  filter?: string;
  sort?: SortKey;
  descending?: boolean;
  /** Tree mode: directories shown open (clean paths). A filter opens what it needs. */
  expanded?: readonly string[];
}

export interface DirTotals {
  /** Entries below the directory (all depths). */
  entries: number;
  files: number;
  /** Bytes of the regular files below it. */
  bytes: number;
}

export interface ViewRow {
  /** Position in the view. */
  index: number;
  path: string;
  name: string;
  depth: number;
  /** undefined for a directory that only exists as a parent of other entries. */
  item?: ViewItem;
  isDir: boolean;
  hasChildren: boolean;
  expanded: boolean;
  totals?: DirTotals;
}

interface TreeNode {
  name: string;
  path: string;
  depth: number;
  parent: number;
  children: number[];
  item: number;
  totals: DirTotals;
}

const compare = (a: string | number, b: string | number): number => (a < b ? -1 : a > b ? 1 : 0);

function isDirItem(item: ViewItem | undefined): boolean {
  return item === undefined || item.entry.kind === EntryKind.Dir;
}

export class ListingView {
  readonly items: ViewItem[] = [];
  readonly #nodes: TreeNode[] = [
    { name: '', path: '', depth: -1, parent: -1, children: [], item: -1, totals: { entries: 0, files: 0, bytes: 0 } },
  ];
  readonly #byPath = new Map<string, number>([['', 0]]);
  #cache: { key: string; ids: Int32Array; tree: boolean; open: Set<number> } | undefined;

  constructor(items: readonly ViewItem[] = []) {
    this.add(items);
  }

  get size(): number {
    return this.items.length;
  }

  /** Totals of the whole view (the root directory's). */
  get totals(): DirTotals {
    return { ...this.#nodes[0]!.totals };
  }

  add(items: readonly ViewItem[]): void {
    for (const item of items) {
      const index = this.items.length;
      this.items.push(item);
      if (item.path === '') continue;
      const id = this.#ensure(item.path);
      const node = this.#nodes[id]!;
      const previous = node.item >= 0 ? this.items[node.item]! : undefined;
      node.item = index;
      const delta = (e: ListingEntry | undefined, sign: number) => {
        if (!e) return;
        const isFile = e.kind === EntryKind.File;
        for (let p = node.parent; p >= 0; p = this.#nodes[p]!.parent) {
          const t = this.#nodes[p]!.totals;
          t.entries += sign;
          if (isFile) {
            t.files += sign;
            t.bytes += sign * e.size;
          }
        }
      };
      delta(previous?.entry, -1);
      delta(item.entry, 1);
    }
    if (items.length) this.#cache = undefined;
  }

  #ensure(path: string): number {
    const known = this.#byPath.get(path);
    if (known !== undefined) return known;
    const slash = path.lastIndexOf('/');
    const parent = slash < 0 ? 0 : this.#ensure(path.slice(0, slash));
    const id = this.#nodes.length;
    const parentNode = this.#nodes[parent]!;
    this.#nodes.push({
      name: path.slice(slash + 1),
      path,
      depth: parentNode.depth + 1,
      parent,
      children: [],
      item: -1,
      totals: { entries: 0, files: 0, bytes: 0 },
    });
    parentNode.children.push(id);
    this.#byPath.set(path, id);
    return id;
  }

  /** Totals for one directory path ('' is the root); undefined for an unknown path. */
  dirTotals(path: string): DirTotals | undefined {
    const id = this.#byPath.get(path);
    return id === undefined ? undefined : { ...this.#nodes[id]!.totals };
  }

  #sortValue(key: SortKey, item: ViewItem | undefined, node: TreeNode | undefined, order: number): string | number {
    switch (key) {
      case 'order':
        return order;
      case 'path':
        return item?.path ?? node?.path ?? '';
      case 'name': {
        const p = item?.path ?? node?.path ?? '';
        return p.slice(p.lastIndexOf('/') + 1);
      }
      case 'size':
        return node && isDirItem(item) ? node.totals.bytes : (item?.entry.size ?? 0);
      case 'mode':
        return item?.entry.mode ?? 0;
      case 'owner':
        return item ? item.entry.uid * 2 ** 22 + item.entry.gid : 0;
      case 'mtime':
        return item?.entry.mtime ?? 0;
      case 'layer':
        return item?.layer ?? -1;
    }
  }

  #run(q: ViewQuery): { ids: Int32Array; tree: boolean; open: Set<number> } {
    const key = JSON.stringify([
      q.mode,
      q.filter ?? '',
      q.sort ?? 'order',
      q.descending === true,
      q.mode === 'tree' ? (q.expanded ?? []) : 0,
      this.items.length,
    ]);
    if (this.#cache?.key === key) return this.#cache;
    const filter = compileFilter(q.filter ?? '');
    const sort = q.sort ?? (q.mode === 'tree' ? 'name' : 'order');
    const dir = q.descending ? -1 : 1;
    let result: { ids: Int32Array; tree: boolean; open: Set<number> };
    if (q.mode === 'flat') {
      const ids: number[] = [];
      for (let i = 0; i < this.items.length; i++) if (!filter || filter(this.items[i]!.path)) ids.push(i);
      if (sort !== 'order' || q.descending) {
        const values = ids.map((i) => this.#sortValue(sort, this.items[i], undefined, i));
        const paths = ids.map((i) => this.items[i]!.path);
        const order = ids.map((_, k) => k);
        order.sort((a, b) => dir * compare(values[a]!, values[b]!) || compare(paths[a]!, paths[b]!) || a - b);
        result = { ids: Int32Array.from(order, (k) => ids[k]!), tree: false, open: new Set() };
      } else result = { ids: Int32Array.from(ids), tree: false, open: new Set() };
    } else {
      const open = new Set<number>();
      let visible: Uint8Array | undefined;
      if (filter) {
        visible = new Uint8Array(this.#nodes.length);
        for (let id = 1; id < this.#nodes.length; id++) {
          if (!filter(this.#nodes[id]!.path)) continue;
          visible[id] = 1;
          for (let p = this.#nodes[id]!.parent; p > 0 && !open.has(p); p = this.#nodes[p]!.parent) {
            open.add(p);
            visible[p] = 1;
          }
        }
      }
      for (const path of q.expanded ?? []) {
        const id = this.#byPath.get(path);
        if (id !== undefined) open.add(id);
      }
      const ids: number[] = [];
      const sortChildren = (children: number[]): number[] => {
        const list = visible ? children.filter((c) => visible![c]) : children.slice();
        const values = new Map<number, string | number>();
        for (const c of list) {
          const n = this.#nodes[c]!;
          values.set(c, this.#sortValue(sort, n.item >= 0 ? this.items[n.item] : undefined, n, n.item));
        }
        const dirFirst = sort === 'name' || sort === 'path';
        return list.sort((a, b) => {
          const na = this.#nodes[a]!;
          const nb = this.#nodes[b]!;
          if (dirFirst) {
            const da = na.children.length > 0 || isDirItem(na.item >= 0 ? this.items[na.item] : undefined);
            const db = nb.children.length > 0 || isDirItem(nb.item >= 0 ? this.items[nb.item] : undefined);
            if (da !== db) return da ? -1 : 1;
          }
          return dir * compare(values.get(a)!, values.get(b)!) || compare(na.name, nb.name);
        });
      };
      const stack: number[] = sortChildren(this.#nodes[0]!.children).reverse();
      while (stack.length) {
        const id = stack.pop()!;
        ids.push(id);
        if (open.has(id)) {
          const kids = sortChildren(this.#nodes[id]!.children);
          for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]!);
        }
      }
      result = { ids: Int32Array.from(ids), tree: true, open };
    }
    this.#cache = { key, ...result };
    return result;
  }

  /** How many rows the query yields. */
  count(q: ViewQuery): number {
    return this.#run(q).ids.length;
  }

  /** Rows [start, start + count) of the query. */
  rows(q: ViewQuery, start: number, count: number): { total: number; rows: ViewRow[] } {
    const { ids, tree, open } = this.#run(q);
    const rows: ViewRow[] = [];
    const end = Math.min(ids.length, Math.max(0, start) + Math.max(0, count));
    for (let i = Math.max(0, start); i < end; i++) {
      const id = ids[i]!;
      if (tree) {
        const node = this.#nodes[id]!;
        const item = node.item >= 0 ? this.items[node.item] : undefined;
        const isDir = node.children.length > 0 || isDirItem(item);
        const row: ViewRow = {
          index: i,
          path: node.path,
          name: node.name,
          depth: node.depth,
          isDir,
          hasChildren: node.children.length > 0,
          expanded: open.has(id),
        };
        if (item) row.item = item;
        if (isDir) row.totals = { ...node.totals };
        rows.push(row);
      } else {
        const item = this.items[id]!;
        const nodeId = this.#byPath.get(item.path);
        const node = nodeId === undefined ? undefined : this.#nodes[nodeId];
        const isDir = isDirItem(item);
        const row: ViewRow = {
          index: i,
          path: item.path,
          name: item.path.slice(item.path.lastIndexOf('/') + 1),
          depth: 0,
          item,
          isDir,
          hasChildren: (node?.children.length ?? 0) > 0,
          expanded: false,
        };
        if (isDir && node) row.totals = { ...node.totals };
        rows.push(row);
      }
    }
    return { total: ids.length, rows };
  }

  /** Position of a path in the query's rows, or -1. */
  indexOf(q: ViewQuery, path: string): number {
    const { ids, tree } = this.#run(q);
    if (tree) {
      const id = this.#byPath.get(path);
      return id === undefined ? -1 : ids.indexOf(id);
    }
    for (let i = 0; i < ids.length; i++) if (this.items[ids[i]!]!.path === path) return i;
    return -1;
  }
}

/** The items of one layer's listing, with what each whiteout did when the merge knows it. */
export function layerItems(
  entries: readonly ListingEntry[],
  layer: number,
  effects?: Map<number, WhiteoutEffect>,
  links?: Map<number, EntrySource>,
): ViewItem[] {
  return entries.map((entry) => {
    const item: ViewItem = { path: entry.path, entry, layer };
    const effect = effects?.get(entry.ordinal);
    if (effect) item.whiteoutEffect = effect;
    const link = links?.get(entry.ordinal);
    if (link) item.linkSource = link;
    return item;
  });
}
