// Unfinished pulls, so a page reloaded (or a browser restarted) mid-pull can offer Resume and
// Discard. One small record per pull in its own IndexedDB database: what was asked for and how
// far it got. The pull worker writes it (at the start, every second of progress, removed when the
// pull ends or is cancelled; a failed pull stays listed); the page lists it.
import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';
import type { SaveKind } from './save/types.ts';

export interface JournalEntry {
  id: string;
  references: string[];
  format: string;
  platform?: string;
  allPlatforms?: boolean;
  keepCopy: boolean;
  save: SaveKind;
  bytesDone: number;
  bytesTotal: number;
  startedAt: number;
  updatedAt: number;
  /** Why it stopped, when it failed (the message shown then). */
  failed?: string;
  /**
   * Blobs this pull stored only to copy them into the file (keep-a-copy off): removed when the
   * pull ends, or by Discard; a Resume treats them as its own again.
   */
  temporary: string[];
}

export class PullJournal {
  readonly #db: UseStore;

  constructor(dbName = 'longshore-journal') {
    this.#db = createStore(dbName, 'pulls');
  }

  async put(entry: JournalEntry): Promise<void> {
    await set(entry.id, entry, this.#db);
  }

  async get(id: string): Promise<JournalEntry | undefined> {
    return get<JournalEntry>(id, this.#db);
  }

  /** Newest first. */
  async list(): Promise<JournalEntry[]> {
    const all = await entries<string, JournalEntry>(this.#db);
    return all.map(([, e]) => e).sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async delete(id: string): Promise<void> {
    await del(id, this.#db);
  }
}

export function journalId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
