// Where an archive can be saved in this browser, decided by feature detection here and nowhere
// else, and the page's half of preparing a save: the pickers must be opened by the Pull click
// itself (a user gesture), so `prepareSave` calls them before its first await.
//
// - `file`: File System Access (Chromium, Edge): the archive is written to the picked file while
//   the pull runs. Where the picker is refused (not allowed here, or closed without choosing), the
//   streamed download takes over.
// - `stream`: a service worker serves the archive as a download while the pull runs (Firefox,
//   Safari, and Chromium when the picker is refused).
// - `blob`: the archive is offered as a download when the pull ends (always available).
// - `folder`: an OCI image layout written into a picked folder (showDirectoryPicker).
import type { PullHooks } from '../bridge.ts';
import { registerSaveWorker, startStreamDownload } from './sw-client.ts';
import type { SaveKind, SaveTarget } from './types.ts';

export interface SavePath {
  kind: SaveKind;
  label: string;
  /** True when the file is written while the pull runs. */
  streams: boolean;
}

export interface SaveFeatures {
  filePicker: boolean;
  folderPicker: boolean;
  serviceWorker: boolean;
}

interface PickerWindow {
  showSaveFilePicker?: (options?: {
    suggestedName?: string;
    types?: { description: string; accept: Record<string, string[]> }[];
  }) => Promise<FileSystemFileHandle>;
  showDirectoryPicker?: (options?: { mode?: 'read' | 'readwrite'; id?: string }) => Promise<FileSystemDirectoryHandle>;
}

export function detectSaveFeatures(): SaveFeatures {
  const w = (typeof window === 'undefined' ? {} : window) as PickerWindow;
  return {
    filePicker: typeof w.showSaveFilePicker === 'function',
    folderPicker: typeof w.showDirectoryPicker === 'function',
    serviceWorker:
      typeof navigator !== 'undefined' && 'serviceWorker' in navigator && typeof isSecureContext !== 'undefined' && isSecureContext,
  };
}

const PATHS: Record<SaveKind, SavePath> = {
  file: { kind: 'file', label: 'A file you choose', streams: true },
  stream: { kind: 'stream', label: 'Your downloads', streams: true },
  blob: { kind: 'blob', label: 'Your downloads, when the pull ends', streams: false },
  folder: { kind: 'folder', label: 'An OCI layout folder you choose', streams: true },
};

/** The paths this browser offers, the default first. */
export function savePaths(features: SaveFeatures = detectSaveFeatures()): SavePath[] {
  const kinds: SaveKind[] = [];
  if (features.filePicker) kinds.push('file');
  if (features.serviceWorker) kinds.push('stream');
  kinds.push('blob');
  if (features.folderPicker) kinds.push('folder');
  return kinds.map((k) => PATHS[k]);
}

export interface PreparedSave {
  target: SaveTarget;
  /** What will actually be used (differs from the choice after a fallback). */
  path: SavePath;
  /** Said to the user when the choice could not be honoured. */
  note?: string;
  hooks: Pick<PullHooks, 'onSaveStream'>;
  /** Call when the pull has ended. */
  dispose(): void;
}

export interface Saver {
  readonly paths: SavePath[];
  /** Undefined when the user closed the folder picker (no pull then). */
  prepare(kind: SaveKind, fileName: string): Promise<PreparedSave | undefined>;
}

export function browserSaver(features: SaveFeatures = detectSaveFeatures()): Saver {
  const paths = savePaths(features);
  if (features.serviceWorker) void registerSaveWorker();
  const offered = (kind: SaveKind) => paths.some((p) => p.kind === kind);

  const streamed = (note?: string): PreparedSave => {
    let stop: (() => void) | undefined;
    let disposed = false;
    return {
      target: { kind: 'stream' },
      path: PATHS.stream,
      ...(note ? { note } : {}),
      hooks: {
        onSaveStream: (port, fileName, size) => {
          void startStreamDownload(port, fileName, size).then((s) => {
            if (disposed) s();
            else stop = s;
          });
        },
      },
      dispose: () => {
        disposed = true;
        stop?.();
      },
    };
  };
  const blob = (note?: string): PreparedSave => ({
    target: { kind: 'blob' },
    path: PATHS.blob,
    ...(note ? { note } : {}),
    hooks: {},
    dispose: () => undefined,
  });
  const fallback = (why: string): PreparedSave => (offered('stream') ? streamed(why) : blob(why));

  return {
    paths,
    prepare(kind, fileName) {
      const w = window as PickerWindow;
      if (kind === 'file' && offered('file') && w.showSaveFilePicker) {
        // Called now, inside the click: the picker needs the user gesture.
        const picking = w.showSaveFilePicker({
          suggestedName: fileName,
          types: [{ description: 'Tar archive', accept: { 'application/x-tar': ['.tar'] } }],
        });
        return picking.then(
          (handle): PreparedSave => ({ target: { kind: 'file', handle }, path: PATHS.file, hooks: {}, dispose: () => undefined }),
          (err: unknown) =>
            fallback(`No file was chosen (${err instanceof Error ? err.name : 'refused'}): saving to your downloads instead.`),
        );
      }
      if (kind === 'folder' && offered('folder') && w.showDirectoryPicker) {
        const picking = w.showDirectoryPicker({ mode: 'readwrite', id: 'longshore-layout' });
        return picking.then(
          (handle): PreparedSave => ({ target: { kind: 'folder', handle }, path: PATHS.folder, hooks: {}, dispose: () => undefined }),
          (err: unknown) => {
            if (err instanceof Error && err.name === 'AbortError') return undefined;
            return fallback(
              `The folder could not be opened (${err instanceof Error ? err.name : 'refused'}): saving an archive to your downloads instead.`,
            );
          },
        );
      }
      if (kind === 'stream' && offered('stream')) return Promise.resolve(streamed());
      return Promise.resolve(blob());
    },
  };
}
