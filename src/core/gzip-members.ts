// gzip through the platform's DecompressionStream, across concatenated members (RFC 1952 §2.2: "a
// gzip file consists of a series of members"). eStargz layers are made that way and Go's reader (so
// Docker) accepts them, but Chromium's decoder stops at the end of the first member and fails on the
// bytes that follow, without saying where the member ended.
//
// So the input is cut just before every `1f 8b 08` (ID1 ID2 CM, which open every member: §2.3.1) and
// each piece is written on its own. The decoder turns a piece down only once it is past the end of its
// member; when that piece starts at a cut, the member ended exactly there, which its trailer confirms
// (ISIZE, the length mod 2^32, equals what the decoder gave; the decoder checked the CRC itself), and a
// fresh decoder takes the next member. A cut inside deflate data only costs one more write: in
// compressed data the three bytes come about once per 16 MiB. Nothing is read twice or kept back
// beyond the two bytes that may begin a cut at the end of a chunk.
import { ErrorCode, LongshoreError, TRUNCATED } from './errors.ts';

const ID1 = 0x1f;
const ID2 = 0x8b;
const CM_DEFLATE = 0x08;

export type NativeGunzip = () => TransformStream<Uint8Array, Uint8Array>;

function invalid(detail: string, cause?: unknown, atEnd = false): LongshoreError {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  return new LongshoreError(ErrorCode.Format, `Invalid gzip data (${detail})${reason}`, { cause, data: atEnd ? { ...TRUNCATED } : {} });
}

/** One member's decoder: a writer we feed piece by piece and a pump that forwards what it gives. */
class MemberDecoder {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pump: Promise<unknown>;
  /** Bytes the decoder gave (it never drops any: a piece is only transformed once all earlier output was read). */
  out = 0;
  /** The last 4 bytes written, kept to read ISIZE if the member turns out to end here. */
  readonly #last4 = new Uint8Array(4);
  #written = 0;

  constructor(create: NativeGunzip, emit: (chunk: Uint8Array) => void) {
    const stream = create();
    this.#writer = stream.writable.getWriter();
    this.#writer.closed.catch(() => undefined);
    const reader = stream.readable.getReader();
    this.#pump = (async () => {
      for (;;) {
        const r = await reader.read();
        if (r.done) return undefined;
        this.out += r.value.byteLength;
        if (r.value.byteLength) emit(r.value);
      }
    })().catch((err: unknown) => err ?? new Error('decoder failed'));
  }

  /** Write a piece; resolves to the decoder's error instead of throwing it. */
  async write(piece: Uint8Array): Promise<unknown> {
    try {
      await this.#writer.write(piece);
    } catch (err) {
      return err ?? new Error('decoder failed');
    }
    this.#remember(piece);
    return undefined;
  }

  #remember(piece: Uint8Array): void {
    this.#written += piece.byteLength;
    if (piece.byteLength >= 4) {
      this.#last4.set(piece.subarray(piece.byteLength - 4));
      return;
    }
    this.#last4.copyWithin(0, piece.byteLength);
    this.#last4.set(piece, 4 - piece.byteLength);
  }

  /** After a refused piece: did the member end right before it, with a trailer that agrees? */
  async endedCleanly(): Promise<boolean> {
    await this.#pump;
    // 10-byte header + at least 2 bytes of deflate + 8-byte trailer (RFC 1952 §2.3).
    if (this.#written < 20) return false;
    const isize = (this.#last4[0]! | (this.#last4[1]! << 8) | (this.#last4[2]! << 16) | (this.#last4[3]! << 24)) >>> 0;
    return isize === this.out % 2 ** 32;
  }

  /** End of input: the decoder checks the member is complete. */
  async close(): Promise<void> {
    try {
      await this.#writer.close();
    } catch (err) {
      await this.#pump;
      throw invalid('truncated or corrupt', err, true);
    }
    const failed = await this.#pump;
    if (failed !== undefined) throw invalid('truncated or corrupt', failed, true);
  }
}

/** Where `1f 8b 08` starts in `bytes` (from `from`), or -1. */
function nextMemberStart(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(ID1, from); i !== -1 && i + 2 < bytes.length; i = bytes.indexOf(ID1, i + 1)) {
    if (bytes[i + 1] === ID2 && bytes[i + 2] === CM_DEFLATE) return i;
  }
  return -1;
}

/** How many bytes at the end of `bytes` could begin `1f 8b 08` once the next chunk comes. */
function partialMagicAtEnd(bytes: Uint8Array): number {
  const n = bytes.length;
  if (n >= 2 && bytes[n - 2] === ID1 && bytes[n - 1] === ID2) return 2;
  if (n >= 1 && bytes[n - 1] === ID1) return 1;
  return 0;
}

/** gzip with every member decoded by the platform's decoder (`create` makes one per member). */
export function nativeGunzipMembers(create: NativeGunzip): TransformStream<Uint8Array, Uint8Array> {
  let emit: (chunk: Uint8Array) => void = () => undefined;
  let member: MemberDecoder | undefined;
  let carry = new Uint8Array(0);
  let members = 0;

  const startMember = (): MemberDecoder => {
    members += 1;
    member = new MemberDecoder(create, emit);
    return member;
  };

  const writeOrFail = async (piece: Uint8Array): Promise<void> => {
    const err = await (member ?? startMember()).write(piece);
    if (err !== undefined) throw invalid(`member ${members}`, err);
  };

  /** A piece that starts with `1f 8b 08`: either more of this member, or the next member. */
  const writeAtMemberStart = async (piece: Uint8Array): Promise<void> => {
    if (!member) return writeOrFail(piece);
    const refused = await member.write(piece);
    if (refused === undefined) return;
    if (!(await member.endedCleanly())) throw invalid(`member ${members}`, refused);
    startMember();
    await writeOrFail(piece);
  };

  const feed = async (bytes: Uint8Array): Promise<void> => {
    let at = 0;
    let cut = nextMemberStart(bytes, 0);
    if (cut !== 0 && bytes.length > 0) {
      const end = cut === -1 ? bytes.length : cut;
      await writeOrFail(bytes.subarray(0, end));
      at = end;
    }
    while (cut !== -1) {
      const next = nextMemberStart(bytes, cut + 1);
      const end = next === -1 ? bytes.length : next;
      await writeAtMemberStart(bytes.subarray(at, end));
      at = end;
      cut = next;
    }
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      emit = (chunk) => controller.enqueue(chunk);
    },
    async transform(chunk) {
      let bytes = chunk;
      if (carry.byteLength) {
        bytes = new Uint8Array(carry.byteLength + chunk.byteLength);
        bytes.set(carry);
        bytes.set(chunk, carry.byteLength);
      }
      const keep = partialMagicAtEnd(bytes);
      carry = bytes.slice(bytes.byteLength - keep);
      await feed(bytes.subarray(0, bytes.byteLength - keep));
    },
    async flush() {
      if (carry.byteLength) await feed(carry);
      if (!member) throw invalid('no data');
      await member.close();
    },
  });
}
