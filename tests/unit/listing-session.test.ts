// The inspector's state and the worker's session together, without a DOM or a Worker: a bridge
// that calls an InspectSession directly, over layers crafted with the project's tar writer.
import { gzipSync } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { TarEntryType, tarBytes, type TarEntryHeader } from '../../src/core/tar/index.ts';
import { InspectSession } from '../../src/browser/inspect-session.ts';
import type { InspectBridgeLike } from '../../src/browser/inspect-bridge.ts';
import type { InspectSource, OpenedInspection, SessionStatus } from '../../src/browser/inspect-protocol.ts';
import type { InspectTarget } from '../../src/core/listing/index.ts';
import { InspectorState } from '../../src/ui/inspect/inspector-state.svelte.ts';

const enc = new TextEncoder();

function tar(specs: [string, TarEntryHeader['type'], string?, string?][]): Uint8Array {
  return tarBytes(
    specs.map(([path, type, content, link]) => {
      const body = content === undefined ? undefined : enc.encode(content);
      const header: TarEntryHeader = {
        path,
        type,
        size: body?.length ?? 0,
        mode: type === TarEntryType.Directory ? 0o755 : 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
      };
      if (link) header.linkname = link;
      return body ? { header, content: body } : { header };
    }),
  );
}

const LAYERS = [
  gzipSync(
    tar([
      ['etc/', TarEntryType.Directory],
      ['etc/a', TarEntryType.File, 'A-old'],
      ['etc/b', TarEntryType.Hardlink, undefined, 'etc/a'],
      ['etc/gone', TarEntryType.File, 'x'],
    ]),
  ),
  gzipSync(
    tar([
      ['etc/a', TarEntryType.File, 'A-new'],
      ['etc/.wh.gone', TarEntryType.File, ''],
    ]),
  ),
];

const TARGET: InspectTarget = {
  reference: 'example.test/app:1',
  config: {
    rootfs: { type: 'layers', diff_ids: ['sha256:' + '0'.repeat(64), 'sha256:' + '1'.repeat(64)] },
    history: [{ created_by: 'one' }, { created_by: 'ENV', empty_layer: true }, { created_by: 'two' }],
  },
  layers: LAYERS.map((l, i) => ({
    digest: `sha256:${String(i).repeat(64)}`,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    size: l.length,
    diffId: undefined,
  })),
};

const toBlob = async (stream: ReadableStream<Uint8Array>, type: string) => new Blob([await new Response(stream).arrayBuffer()], { type });

function fakeBridge(): InspectBridgeLike & { sessions: Map<number, InspectSession> } {
  const sessions = new Map<number, InspectSession>();
  let next = 1;
  return {
    sessions,
    async open(source: InspectSource, onStatus: (s: SessionStatus) => void): Promise<OpenedInspection> {
      if (source.kind !== 'stored') throw new Error('archives are tested in the e2e');
      const id = next++;
      const session: InspectSession = new InspectSession({
        id,
        name: 'app',
        layers: LAYERS.map((bytes) => ({ open: async () => new Blob([bytes]).stream() })),
        toBlob,
        onChange: () => queueMicrotask(() => onStatus(session.status())),
      });
      sessions.set(id, session);
      return { session: id, target: source.target };
    },
    async query(session, view, query, start, count) {
      return sessions.get(session)!.query(view, query, start, count);
    },
    download: (session, layer, ordinal) => sessions.get(session)!.download(layer, ordinal),
    export: (session, options) => sessions.get(session)!.export(options),
    close: (session) => sessions.get(session)?.close(),
  };
}

/** Waits until `check` passes (the state applies worker answers asynchronously); no fixed sleep. */
const until = (check: () => void) => vi.waitFor(check, { timeout: 10_000, interval: 5 });

describe('InspectorState over an InspectSession', () => {
  it("opens a target, lists layers, merges, explains whiteouts and downloads a hardlink's content", async () => {
    const bridge = fakeBridge();
    const saved: { name: string; text: string }[] = [];
    const state = new InspectorState(
      () => bridge,
      (blob, name) => void blob.text().then((text) => saved.push({ name, text })),
    );
    await state.openTarget(TARGET);
    await bridge.sessions.get(state.opened!.session)!.settled();
    await until(() => {
      expect(state.status?.layers.map((l) => l.state)).toEqual(['complete', 'complete']);
      expect(state.status?.merged.state).toBe('ready');
    });
    expect(state.status?.layers[1]!.changes).toMatchObject({ changed: 1, deleted: 1 });

    state.showWindow(0, 20);
    await until(() => expect(state.rows.map((r) => r.path)).toEqual(['etc']));
    state.toggle('etc');
    await until(() => expect(state.rows.map((r) => r.path)).toEqual(['etc', 'etc/a', 'etc/b', 'etc/gone']));

    state.select(1);
    state.setMode('flat');
    await until(() => expect(state.rows.some((r) => r.path === 'etc/.wh.gone')).toBe(true));
    const whiteout = state.rows.find((r) => r.path === 'etc/.wh.gone')!;
    expect(whiteout.item?.whiteoutEffect).toMatchObject({ target: 'etc/gone', removed: 1, fromLayers: [0] });

    state.select('merged');
    state.setFilter('etc/');
    await until(() => expect(state.rows.map((r) => `${r.path}@${r.item?.layer}`)).toEqual(['etc/a@1', 'etc/b@0']));
    await state.download(state.rows[1]!);
    state.toggleSort('size');
    expect(state.sort).toBe('size');
    expect(state.descending).toBe(true);

    await state.exportMerged();
    await until(() => expect(saved).toHaveLength(2));
    expect(saved[0]).toEqual({ name: 'b', text: 'A-old' });
    expect(saved[1]!.name).toBe('app-rootfs.tar');
    expect(saved[1]!.text).toContain('A-new');
    expect(state.error).toBeUndefined();
  });

  it('shows a failed layer with its reason and refuses to export an incomplete merge', async () => {
    // The second layer is cut short.
    const cut = new InspectSession({
      id: 99,
      name: 'cut',
      layers: [LAYERS[0]!, LAYERS[1]!.slice(0, 20)].map((bytes) => ({ open: async () => new Blob([bytes]).stream() })),
      toBlob,
      onChange: () => undefined,
    });
    await cut.settled();
    const status = cut.status();
    expect(status.layers[1]!.state).toBe('failed');
    expect(status.layers[1]!.error?.message).toMatch(/gzip|truncated|unexpected end/i);
    expect(status.merged.state).toBe('partial');
    await expect(cut.export()).rejects.toThrow(/incomplete/);
  });
});
