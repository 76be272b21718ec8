// Where a pull saves: the paths a browser is offered (feature detection in one place), and the page
// state asking for the destination inside the Pull click (a picker needs the user gesture), passing
// it, keep-a-copy and a journal id to the worker, and Resume re-running an unfinished pull.
import { describe, expect, it } from 'vitest';
import { flushSync } from 'svelte';
import { savePaths, type PreparedSave, type Saver } from '../../src/browser/save/choose.ts';
import { PullState, type BridgeLike } from '../../src/ui/state/pull-state.svelte.ts';
import type { PullOutcome, PullRequest } from '../../src/browser/protocol.ts';
import type { JournalEntry } from '../../src/browser/journal.ts';

const outcome: PullOutcome = {
  saved: { kind: 'file', name: 'alpine_latest.tar', bytes: 1 },
  fileName: 'alpine_latest.tar',
  size: 1,
  format: 'docker',
  reference: 'docker.io/library/alpine:latest',
  digest: `sha256:${'d'.repeat(64)}`,
  platform: 'linux/amd64',
};

describe('save paths', () => {
  it('Chromium (pickers and a service worker): the picked file first, the folder offered last', () => {
    expect(savePaths({ filePicker: true, folderPicker: true, serviceWorker: true }).map((p) => [p.kind, p.streams])).toEqual([
      ['file', true],
      ['stream', true],
      ['blob', false],
      ['folder', true],
    ]);
  });

  it('Firefox / Safari (a service worker, no pickers): the streamed download first', () => {
    expect(savePaths({ filePicker: false, folderPicker: false, serviceWorker: true }).map((p) => p.kind)).toEqual(['stream', 'blob']);
  });

  it('no service worker (not a secure context, private modes): the Blob at the end only', () => {
    expect(savePaths({ filePicker: false, folderPicker: false, serviceWorker: false }).map((p) => p.kind)).toEqual(['blob']);
  });
});

function fakes() {
  const requests: PullRequest[] = [];
  const calls: string[] = [];
  const bridge: BridgeLike = {
    resolve: async () => ({ kind: 'image', reference: 'x', digest: 'x', mediaType: 'm', platforms: [] }),
    pull: async (req) => {
      requests.push(req);
      return outcome;
    },
  };
  let answer: PreparedSave | undefined;
  const saver: Saver = {
    paths: savePaths({ filePicker: true, folderPicker: true, serviceWorker: true }),
    prepare: (kind, fileName) => {
      calls.push(`${kind} ${fileName}`);
      return Promise.resolve(answer);
    },
  };
  const prepared = (target: PreparedSave['target']): PreparedSave => ({
    target,
    path: saver.paths.find((p) => p.kind === target.kind)!,
    hooks: {},
    dispose: () => calls.push('dispose'),
  });
  return { requests, calls, bridge, saver, setAnswer: (a: PreparedSave | undefined) => (answer = a), prepared };
}

describe('PullState and the destination', () => {
  it('asks for the destination synchronously inside pull() (the click), with the archive’s file name', async () => {
    const f = fakes();
    const s = new PullState(f.bridge, () => 0, undefined, f.saver);
    expect(s.saveKind).toBe('file');
    s.name = 'alpine';
    flushSync();
    f.setAnswer(f.prepared({ kind: 'stream' }));
    const running = s.pull();
    // Before the first await returned: the picker was opened in the same task as the click.
    expect(f.calls).toEqual(['file alpine_latest.tar']);
    await running;
    expect(f.requests[0]).toMatchObject({ save: { kind: 'stream' }, keepCopy: true });
    expect(f.requests[0]!.journalId).toMatch(/^[a-z0-9]+-[a-z0-9]+$/);
    expect(s.status).toBe('ready');
    expect(f.calls.at(-1)).toBe('dispose');
  });

  it('a folder picker closed without choosing starts no pull', async () => {
    const f = fakes();
    const s = new PullState(f.bridge, () => 0, undefined, f.saver);
    s.name = 'alpine';
    s.saveKind = 'folder';
    flushSync();
    f.setAnswer(undefined);
    await s.pull();
    expect(f.requests).toEqual([]);
    expect(s.status).toBe('idle');
  });

  it('Resume re-runs the unfinished pull under its journal id, keep-a-copy and destination as they were', async () => {
    const f = fakes();
    const s = new PullState(f.bridge, () => 0, undefined, f.saver);
    f.setAnswer(f.prepared({ kind: 'blob' }));
    const entry: JournalEntry = {
      id: 'abc-123',
      references: ['docker.io/library/alpine:latest'],
      format: 'legacy',
      platform: 'linux/arm64',
      keepCopy: false,
      save: 'stream',
      bytesDone: 5,
      bytesTotal: 10,
      startedAt: 1,
      updatedAt: 2,
      temporary: [],
    };
    await s.resume(entry);
    expect(f.calls[0]).toBe('stream alpine_latest.tar');
    expect(f.requests[0]).toMatchObject({
      references: ['docker.io/library/alpine:latest'],
      format: 'legacy',
      platform: 'linux/arm64',
      keepCopy: false,
      journalId: 'abc-123',
    });
  });
});
