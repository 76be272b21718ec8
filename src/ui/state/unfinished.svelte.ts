// Pulls that did not finish (the page was reloaded or closed, or they failed), read from the
// journal the pull worker keeps, offered with Resume and Discard.
import type { JournalEntry } from '../../browser/journal.ts';

export interface JournalLike {
  list(): Promise<JournalEntry[]>;
  delete(id: string): Promise<void>;
}

export class UnfinishedPulls {
  entries = $state.raw<JournalEntry[]>([]);

  constructor(
    private readonly journal: JournalLike,
    private readonly dropBlobs: (keys: string[]) => Promise<void>,
  ) {}

  async load(): Promise<void> {
    this.entries = await this.journal.list().catch(() => []);
  }

  /** Forget the pull, and the blobs it kept only to copy them into its file. */
  async discard(entry: JournalEntry): Promise<void> {
    await this.dropBlobs(entry.temporary).catch(() => undefined);
    await this.journal.delete(entry.id);
    await this.load();
  }
}
