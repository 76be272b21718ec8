// Crafted tars that chain PAX metadata: each header under the per-header limit, their total not.
// The reader, the archive index and the layer listing stop with a clear error at the limit, and
// global records are not copied into every entry.
import { describe, expect, it } from 'vitest';
import { TarEntryType, readTar, type TarEntryHeader } from '../../src/core/tar/index.ts';
import { BLOCK_SIZE, encodeHeader, encodePax, endOfArchive, paddingFor } from '../../src/core/tar/header.ts';
import { indexTar } from '../../src/core/archive/tar-index.ts';
import { blobRandomAccess } from '../../src/core/archive/random-access.ts';
import { listLayer } from '../../src/core/listing/index.ts';

const MiB = 1024 * 1024;
type Part = { header: TarEntryHeader; content?: Uint8Array };

const header = (path: string, type: TarEntryHeader['type'], size = 0): TarEntryHeader => ({
  path,
  type,
  size,
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: 1_704_067_200,
});
const file = (path: string, text = ''): Part => {
  const content = new TextEncoder().encode(text);
  return { header: header(path, TarEntryType.File, content.length), content };
};
/** A metadata header ('x' or 'g') carrying `records` (our writer makes these only for its own use). */
const meta = (type: TarEntryHeader['type'], records: Record<string, string>): Part => {
  const content = encodePax(records);
  return { header: header('PaxHeaders/meta', type, content.length), content };
};

/** Header blocks, content and padding, as a tar writer lays them out (ustar: pax spec "ustar Interchange Format"). */
function tarBytes(parts: Part[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const { header: h, content } of parts) {
    const block = encodeHeader({ ...h, type: TarEntryType.File });
    // Set the typeflag and recompute the checksum (sum of the header bytes, the field as spaces).
    const at = block.length - BLOCK_SIZE;
    block[at + 156] = h.type.charCodeAt(0);
    block.fill(0x20, at + 148, at + 156);
    const sum = block.subarray(at, at + BLOCK_SIZE).reduce((a, b) => a + b, 0);
    block.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, '0')}\0 `), at + 148);
    chunks.push(block);
    if (content) chunks.push(content, new Uint8Array(paddingFor(content.length)));
  }
  chunks.push(endOfArchive());
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}
/** `n` records of about `size` bytes each, with keys unique across calls via `tag`. */
const records = (tag: string, n: number, size = 100): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`LONGSHORE.test.${tag}.${i}`, 'v'.repeat(size)]));

function streamOf(bytes: Uint8Array, chunk = 65_536): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

async function readAll(bytes: Uint8Array) {
  const out: TarEntryHeader[] = [];
  for await (const entry of readTar(streamOf(bytes))) out.push(entry.header);
  return out;
}

const randomAccess = (bytes: Uint8Array) => blobRandomAccess(new Blob([bytes as BlobPart]));

// 40 extended headers of ~125 KB each before one entry: 5 MB of metadata, each header far under 1 MiB.
const chained = tarBytes([
  ...Array.from({ length: 40 }, (_, i) => meta(TarEntryType.PaxExtended, records(`x${i}`, 1000))),
  file('victim', 'x'),
]);
// The same with global headers.
const chainedGlobals = tarBytes([
  ...Array.from({ length: 40 }, (_, i) => meta(TarEntryType.PaxGlobal, records(`g${i}`, 1000))),
  file('victim', 'x'),
]);

describe('chained extended headers', () => {
  it.each([
    ['PAX extended', chained],
    ['PAX global', chainedGlobals],
  ])('%s headers in a row stop at 1 MiB in total, not after 5 MB', async (_name, bytes) => {
    const err = await readAll(bytes).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string; data: { offset: number } },
    );
    expect(err?.code).toBe('TAR');
    expect(err?.message).toMatch(/metadata headers in a row.*over the limit of 1048576 bytes/);
    expect(err?.data.offset).toBeLessThan(2 * MiB);
  });

  it('the archive index stops there too', async () => {
    await expect(indexTar(randomAccess(chained))).rejects.toMatchObject({
      code: 'TAR',
      message: expect.stringMatching(/metadata headers in a row/),
    });
  });

  it('a layer listing ends failed with that reason, and keeps what it listed before', async () => {
    const layer = tarBytes([
      file('before', 'a'),
      ...Array.from({ length: 40 }, (_, i) => meta(TarEntryType.PaxExtended, records(`x${i}`, 1000))),
      file('victim', 'x'),
    ]);
    const listing = await listLayer(streamOf(layer));
    expect(listing.status).toBe('failed');
    expect(listing.entries.map((e) => e.path)).toEqual(['before']);
    expect(listing.issues.map((i) => i.message).join('\n')).toMatch(/metadata headers in a row/);
  });

  it('a long run under the total still reads, and the last value of a key wins', async () => {
    const parts = [
      ...Array.from({ length: 7 }, (_, i) => meta(TarEntryType.PaxExtended, { ...records(`ok${i}`, 1000), path: `name-${i}` })),
      file('short'),
    ];
    const [entry] = await readAll(tarBytes(parts));
    expect(entry!.path).toBe('name-6');
    expect(Object.keys(entry!.pax ?? {})).toHaveLength(7 * 1000 + 1);
  });
});

describe('global records', () => {
  it('are not copied into every entry: only the fields they set apply', async () => {
    // 20 global headers of 500 unknown records each, interleaved with 200 entries.
    const parts: Part[] = [];
    for (let g = 0; g < 20; g++) {
      parts.push(meta(TarEntryType.PaxGlobal, { ...records(`g${g}`, 500, 20), 'SCHILY.xattr.user.g': `global-${g}`, uname: `user-${g}` }));
      for (let i = 0; i < 10; i++) parts.push(file(`d${g}/f${i}`, 'x'));
    }
    const headers = await readAll(tarBytes(parts));
    expect(headers).toHaveLength(200);
    for (const h of headers) expect(Object.keys(h.pax ?? {})).toEqual(['uname']);
    expect(headers[0]!.uname).toBe('user-0');
    expect(headers[199]!.uname).toBe('user-19');

    const listing = await listLayer(streamOf(tarBytes(parts)));
    expect(listing.status).toBe('complete');
    expect(listing.entries.filter((e) => e.xattrs)).toEqual([]);
  });

  it('apply to the entries after them until an empty value removes them (pax spec)', async () => {
    const headers = await readAll(
      tarBytes([
        meta(TarEntryType.PaxGlobal, { mtime: '1000', gname: 'staff' }),
        file('a'),
        meta(TarEntryType.PaxExtended, { mtime: '2000' }),
        file('b'),
        meta(TarEntryType.PaxGlobal, { gname: '' }),
        file('c'),
      ]),
    );
    expect(headers.map((h) => [h.path, h.mtime, h.gname ?? ''])).toEqual([
      ['a', 1000, 'staff'],
      ['b', 2000, 'staff'],
      ['c', 1000, ''],
    ]);
  });
});
