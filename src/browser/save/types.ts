// What the page hands the pull worker to say where the archive goes, and the relay protocol
// between the pull worker and the service worker that serves a streamed download.

/** `file`: a file picked with showSaveFilePicker; `stream`: a download served by the service worker while the pull runs; `blob`: a Blob offered when the pull ends; `folder`: an OCI image layout in a picked folder. */
export type SaveKind = 'file' | 'stream' | 'blob' | 'folder';

/** Structured-cloneable (file system handles are), so it travels inside the pull request. */
export type SaveTarget =
  | { kind: 'file'; handle: FileSystemFileHandle }
  | { kind: 'folder'; handle: FileSystemDirectoryHandle }
  | { kind: 'stream' }
  | { kind: 'blob' };

/** Where the archive ended up, for the page to say. */
export interface SavedInfo {
  kind: SaveKind;
  /** File or folder name. */
  name: string;
  bytes: number;
}

/** Pull worker → service worker, over the MessagePort of one download. */
export type ToSaveWorker =
  | { t: 'chunk'; b: Uint8Array }
  /** A stored blob, by reference: the service worker reads it itself (no copy through the pull worker). */
  | { t: 'blob'; b: Blob }
  | { t: 'end' }
  | { t: 'error'; message: string };

/**
 * Service worker → pull worker. `credit`: that many more bytes may be sent (backpressure from the
 * download); `back`: the buffer of a chunk the download has taken, to be filled again (so a few
 * buffers carry the whole archive instead of one new one per chunk left for the collector);
 * `read`: the service worker has read the next stored blob sent by reference to its end (its
 * file may go); `done`: the browser took every byte; `cancel`: the user cancelled the download.
 * The page sends `fail` on the same port when it could not start the download at all.
 */
export type FromSaveWorker =
  | { t: 'credit'; n: number }
  | { t: 'back'; b: ArrayBuffer }
  | { t: 'read' }
  | { t: 'done' }
  | { t: 'cancel' }
  | { t: 'fail'; message: string };

/** Page → service worker: serve the download `id` from `port`. */
export interface SaveRegistration {
  type: 'longshore-save';
  id: string;
  fileName: string;
  /** Content-Length; absent when the size is not known up front (legacy). */
  size?: number;
  port: MessagePort;
}

/** The path under the service worker's scope that downloads are served from: `<scope><id>/<file name>`. */
export const SAVE_SCOPE = 'longshore-save/';
