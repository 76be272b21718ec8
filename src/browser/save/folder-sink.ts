// "Save as an OCI layout folder" (showDirectoryPicker): what crane's SaveOCI / `crane pull
// --format oci` write (image-spec image-layout.md): blobs/sha256/<hex> for every blob, each written
// as soon as it has been verified (any order: a folder has no archive order), then `oci-layout`,
// then `index.json` last, so a folder without index.json never looks finished. A folder that holds
// a layout already gets the image appended to its index.json, as crane's layout.AppendImage does;
// blobs it has already (same size) are not written again. On failure the blobs this pull created
// are removed and index.json is left as it was.
import { ErrorCode, LongshoreError } from '../../core/errors.ts';
import { isContentRef } from '../../core/tar/writer.ts';
import { TarEntryType } from '../../core/tar/header.ts';
import type { BlobReady } from '../../core/formats/stream.ts';
import { isLaterRef, type FormatEntry } from '../../core/formats/types.ts';
import type { Descriptor } from '../../core/image/model.ts';
import { saveError, storedBlob, type StoredBlobs } from './destination.ts';

const LAST = ['oci-layout', 'index.json'];

interface Options {
  store: StoredBlobs;
  signal?: AbortSignal;
  onCopied?: (key: string) => void | Promise<void>;
  onBytes?: (n: number) => void;
}

async function fileSize(dir: FileSystemDirectoryHandle, name: string): Promise<number | undefined> {
  try {
    return (await (await dir.getFileHandle(name)).getFile()).size;
  } catch {
    return undefined;
  }
}

async function readText(dir: FileSystemDirectoryHandle, name: string): Promise<string | undefined> {
  try {
    return await (await (await dir.getFileHandle(name)).getFile()).text();
  } catch {
    return undefined;
  }
}

export async function saveLayoutFolder(
  root: FileSystemDirectoryHandle,
  entries: readonly FormatEntry[],
  ready: BlobReady,
  options: Options,
): Promise<number> {
  const what = `to the folder ${root.name}`;
  const created: { dir: FileSystemDirectoryHandle; name: string }[] = [];
  const writing = new Set<FileSystemWritableFileStream>();
  let bytes = 0;
  const dirs = new Map<string, FileSystemDirectoryHandle>([['', root]]);
  const dirOf = async (path: string): Promise<FileSystemDirectoryHandle> => {
    const known = dirs.get(path);
    if (known) return known;
    const cut = path.lastIndexOf('/');
    const parent = await dirOf(cut < 0 ? '' : path.slice(0, cut));
    const handle = await parent.getDirectoryHandle(path.slice(cut + 1), { create: true });
    dirs.set(path, handle);
    return handle;
  };
  const split = (path: string) => {
    const cut = path.lastIndexOf('/');
    return { dir: cut < 0 ? '' : path.slice(0, cut), name: path.slice(cut + 1) };
  };
  const writeFile = async (path: string, data: Blob | Uint8Array, replace: boolean) => {
    const { dir: dirPath, name } = split(path);
    const dir = await dirOf(dirPath);
    const size = data instanceof Blob ? data.size : data.byteLength;
    const existing = await fileSize(dir, name);
    // A blob is named by its digest: one of the same size there already is the same blob.
    if (!replace && existing === size) return;
    const handle = await dir.getFileHandle(name, { create: true });
    if (existing === undefined) created.push({ dir, name });
    const w = await handle.createWritable();
    writing.add(w);
    try {
      await w.write(data as Blob | Uint8Array<ArrayBuffer>);
      await w.close();
    } catch (err) {
      await w.abort().catch(() => undefined);
      throw err;
    } finally {
      writing.delete(w);
    }
    bytes += size;
    options.onBytes?.(size);
  };

  try {
    const previous = await readText(root, 'index.json');
    let previousManifests: Descriptor[] = [];
    if (previous !== undefined) {
      const parsed = JSON.parse(previous) as { manifests?: unknown };
      if (!Array.isArray(parsed.manifests)) {
        throw new LongshoreError(ErrorCode.InvalidArgument, `The folder ${root.name} holds an index.json that is not an OCI image index.`, {
          hint: 'Choose an empty folder, or one that holds an OCI image layout.',
        });
      }
      previousManifests = parsed.manifests as Descriptor[];
    }
    const files = entries.filter((e) => e.header.type === TarEntryType.File && !LAST.includes(e.header.path));
    for (const e of entries) if (e.header.type === TarEntryType.Directory) await dirOf(e.header.path.replace(/\/+$/, ''));
    // Blobs in hand (manifests, configs: verified against their digests when fetched) at once;
    // stored ones each as soon as it has been verified, several at a time.
    // The first failure stops the others before the clean-up (they may wait on blobs yet to come).
    const stop = new AbortController();
    const stopped = new Promise<never>((_, reject) =>
      stop.signal.addEventListener('abort', () => reject(stop.signal.reason as Error), { once: true }),
    );
    stopped.catch(() => undefined);
    const settled = await Promise.allSettled(
      files.map(async (e) => {
        try {
          const content = e.content;
          if (isContentRef(content) || isLaterRef(content)) {
            const size = await Promise.race([ready(content.key), stopped]);
            options.signal?.throwIfAborted();
            await writeFile(e.header.path, await storedBlob(options.store, content.key, size), false);
            await options.onCopied?.(content.key);
          } else {
            await writeFile(e.header.path, content ?? new Uint8Array(0), false);
          }
        } catch (err) {
          if (!stop.signal.aborted) stop.abort(err);
          throw err;
        }
      }),
    );
    if (stop.signal.aborted) throw stop.signal.reason;
    if (settled.some((s) => s.status === 'rejected')) throw (settled.find((s) => s.status === 'rejected') as PromiseRejectedResult).reason;
    options.signal?.throwIfAborted();
    const layout = entries.find((e) => e.header.path === 'oci-layout');
    if (layout?.content instanceof Uint8Array && (await fileSize(root, 'oci-layout')) === undefined)
      await writeFile('oci-layout', layout.content, true);
    const index = entries.find((e) => e.header.path === 'index.json');
    if (!(index?.content instanceof Uint8Array)) throw new LongshoreError(ErrorCode.Internal, 'The layout plan has no index.json.');
    let indexBytes = index.content;
    if (previous !== undefined) {
      const ours = JSON.parse(new TextDecoder().decode(indexBytes)) as { manifests: Descriptor[] };
      const same = (a: Descriptor, b: Descriptor) =>
        a.digest === b.digest && JSON.stringify(a.annotations ?? {}) === JSON.stringify(b.annotations ?? {});
      const merged = {
        ...(JSON.parse(previous) as object),
        manifests: [...previousManifests.filter((d) => !ours.manifests.some((o) => same(o, d))), ...ours.manifests],
      };
      indexBytes = new TextEncoder().encode(JSON.stringify(merged));
    }
    await writeFile('index.json', indexBytes, true);
    return bytes;
  } catch (err) {
    for (const w of writing) await w.abort().catch(() => undefined);
    for (const { dir, name } of created.reverse()) await dir.removeEntry(name).catch(() => undefined);
    throw saveError(err, what);
  }
}
