// Random access to a local archive: a browser File (or any Blob) is sliced, never read whole, so a
// multi-gigabyte `docker save` is indexed by reading its headers only.

export interface RandomAccess {
  readonly size: number;
  /** Up to `length` bytes from `offset` (fewer only at the end). */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Bytes [offset, offset + length) as a stream. */
  stream(offset: number, length: number): ReadableStream<Uint8Array>;
}

export function blobRandomAccess(blob: Blob): RandomAccess {
  return {
    size: blob.size,
    async read(offset, length) {
      return new Uint8Array(await blob.slice(offset, Math.min(blob.size, offset + length)).arrayBuffer());
    },
    stream(offset, length) {
      return blob.slice(offset, Math.min(blob.size, offset + length)).stream();
    },
  };
}

export function bytesRandomAccess(bytes: Uint8Array, chunkSize = 64 * 1024): RandomAccess {
  return {
    size: bytes.byteLength,
    async read(offset, length) {
      return bytes.slice(offset, Math.min(bytes.byteLength, offset + length));
    },
    stream(offset, length) {
      let at = offset;
      const end = Math.min(bytes.byteLength, offset + length);
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (at >= end) return controller.close();
          const next = Math.min(end, at + chunkSize);
          controller.enqueue(bytes.slice(at, next));
          at = next;
        },
      });
    },
  };
}
