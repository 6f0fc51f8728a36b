// Reading CRIU's `stats-dump` / `stats-restore` images: how long the freeze, memory dump and restore
// took and how many pages moved. CRIU ships no JSON form of these (crit needs Python and pycriu), so
// the file is decoded here with a minimal protobuf reader.
//
// File layout (criu/image.c, criu/protobuf.c, images/stats.proto):
//   u32 LE IMG_SERVICE_MAGIC 0x55105940  -- stats and irmap-cache are "service" files, so they carry
//                                           this instead of IMG_COMMON_MAGIC (0x54564319)
//   u32 LE STATS_MAGIC       0x57093306
//   u32 LE length N, then N bytes of one StatsEntry message (pb_write_one framing)

/** Statistics of one `criu dump`; times are microseconds. */
export interface DumpStats {
  freezingTimeUs: number;
  frozenTimeUs: number;
  memdumpTimeUs: number;
  memwriteTimeUs: number;
  pagesScanned: number;
  pagesSkippedParent: number;
  pagesWritten: number;
  /** Absent when the CRIU that wrote the file did not record it. */
  irmapResolveUs?: number;
  pagesLazy: number;
  pagePipes: number;
  pagePipeBufs: number;
  shpagesScanned: number;
  shpagesSkippedParent: number;
  shpagesWritten: number;
}

/** Statistics of one `criu restore`; times are microseconds. */
export interface RestoreStats {
  pagesCompared: number;
  pagesSkippedCow: number;
  forkingTimeUs: number;
  restoreTimeUs: number;
  pagesRestored: number;
}

/** A stats image that cannot be decoded (wrong magic, truncated, bad protobuf). */
export class StatsImageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StatsImageError";
  }
}

/** criu/include/magic.h */
export const IMG_SERVICE_MAGIC = 0x55105940;
export const STATS_MAGIC = 0x57093306;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

type FieldValue = { wire: typeof WIRE_VARINT; value: number } | {
  wire: typeof WIRE_LEN;
  bytes: Uint8Array;
};

/** Cursor over one protobuf message; every read is bounds-checked so corrupt input throws, never misreads. */
class Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array, private readonly what: string) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  fail(msg: string): never {
    throw new StatsImageError(`${this.what}: ${msg} at byte ${this.pos}`);
  }

  /** Unsigned varint as a JS number; arithmetic rather than bit ops because uint64 overflows 32 bits. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        // Page counts and microsecond timings stay far below 2^53; anything above is corruption.
        if (!Number.isSafeInteger(result)) this.fail("varint exceeds 2^53");
        return result;
      }
      scale *= 128;
    }
    return this.fail("varint longer than 10 bytes");
  }

  take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) this.fail(`field of ${n} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /**
   * Next (field number, value); fixed-width fields are skipped and reported as null since no stats
   * field uses them, but a newer CRIU could add one and the file must still parse.
   */
  field(): { num: number; val: FieldValue | null } {
    const key = this.varint();
    const num = Math.floor(key / 8);
    const wire = key % 8;
    if (num === 0) this.fail("field number 0");
    switch (wire) {
      case WIRE_VARINT:
        return { num, val: { wire, value: this.varint() } };
      case WIRE_LEN:
        return { num, val: { wire, bytes: this.take(this.varint()) } };
      case WIRE_FIXED64:
        this.take(8);
        return { num, val: null };
      case WIRE_FIXED32:
        this.take(4);
        return { num, val: null };
      default:
        // 3/4 are proto2 groups, never used by CRIU; 6/7 do not exist.
        return this.fail(`unsupported wire type ${wire} for field ${num}`);
    }
  }
}

/**
 * Decodes the scalar fields of a message into number -> value (last occurrence wins, as in protobuf).
 * Unknown numbers are kept too and simply never looked up, which is how they get skipped.
 */
function scalarFields(bytes: Uint8Array, what: string): Map<number, number> {
  const r = new Reader(bytes, what);
  const out = new Map<number, number>();
  while (!r.done) {
    const { num, val } = r.field();
    if (val?.wire === WIRE_VARINT) out.set(num, val.value);
  }
  return out;
}

function decodeDump(bytes: Uint8Array): DumpStats {
  const f = scalarFields(bytes, "DumpStatsEntry");
  // proto2 `required` fields are still defaulted to 0: older CRIUs lack some (pages_lazy) and a
  // missing counter is more useful as 0 than as a failed parse.
  const n = (num: number) => f.get(num) ?? 0;
  const stats: DumpStats = {
    freezingTimeUs: n(1),
    frozenTimeUs: n(2),
    memdumpTimeUs: n(3),
    memwriteTimeUs: n(4),
    pagesScanned: n(5),
    pagesSkippedParent: n(6),
    pagesWritten: n(7),
    pagesLazy: n(9),
    pagePipes: n(10),
    pagePipeBufs: n(11),
    shpagesScanned: n(12),
    shpagesSkippedParent: n(13),
    shpagesWritten: n(14),
  };
  // Kept absent rather than 0 when missing: it is the one field CRIU itself treats as optional to show.
  const irmap = f.get(8);
  if (irmap !== undefined) stats.irmapResolveUs = irmap;
  return stats;
}

function decodeRestore(bytes: Uint8Array): RestoreStats {
  const f = scalarFields(bytes, "RestoreStatsEntry");
  const n = (num: number) => f.get(num) ?? 0;
  return {
    pagesCompared: n(1),
    pagesSkippedCow: n(2),
    forkingTimeUs: n(3),
    restoreTimeUs: n(4),
    pagesRestored: n(5),
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Decodes a whole `stats-dump` / `stats-restore` file. Throws StatsImageError on any malformation. */
export function parseStatsImage(bytes: Uint8Array): { dump?: DumpStats; restore?: RestoreStats } {
  if (bytes.length < 12) {
    throw new StatsImageError(`stats image too short (${bytes.length} bytes, need at least 12)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const first = view.getUint32(0, true);
  const second = view.getUint32(4, true);
  const hex = (v: number) => `0x${v.toString(16).padStart(8, "0")}`;
  if (first !== IMG_SERVICE_MAGIC || second !== STATS_MAGIC) {
    throw new StatsImageError(
      `not a CRIU stats image: magic ${hex(first)} ${hex(second)}, expected ${hex(IMG_SERVICE_MAGIC)} ${
        hex(STATS_MAGIC)
      }`,
    );
  }
  const len = view.getUint32(8, true);
  if (len > bytes.length - 12) {
    throw new StatsImageError(`stats image truncated: entry of ${len} bytes, only ${bytes.length - 12} left`);
  }
  // Bytes after the entry are ignored, as CRIU's own pb_read_one reads exactly one entry.
  const r: Reader = new Reader(bytes.subarray(12, 12 + len), "StatsEntry");
  // A sub-message may legally be split over several occurrences; protobuf merges them, which is
  // the same as decoding their concatenation.
  const dump: Uint8Array[] = [];
  const restore: Uint8Array[] = [];
  while (!r.done) {
    const { num, val } = r.field();
    if (num !== 1 && num !== 2) continue;
    if (val?.wire !== WIRE_LEN) r.fail(`field ${num} (${num === 1 ? "dump" : "restore"}) is not a message`);
    (num === 1 ? dump : restore).push(val.bytes);
  }
  const out: { dump?: DumpStats; restore?: RestoreStats } = {};
  if (dump.length) out.dump = decodeDump(concat(dump));
  if (restore.length) out.restore = decodeRestore(concat(restore));
  return out;
}

/** Reads `<dir>/<name>`; null when it does not exist (the operation failed early or never ran). */
function readImage(dir: string, name: string): ReturnType<typeof parseStatsImage> | null {
  const path = `${dir}/${name}`;
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return parseStatsImage(bytes);
  } catch (e) {
    // Name the file: the bare decoder message does not say which image was bad.
    throw new StatsImageError(`${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The stats CRIU wrote to `<dir>/stats-dump`, or null if there is no such file. */
export function readDumpStats(dir: string): DumpStats | null {
  const img = readImage(dir, "stats-dump");
  if (!img) return null;
  if (!img.dump) throw new StatsImageError(`${dir}/stats-dump has no dump section`);
  return img.dump;
}

/** The stats CRIU wrote to `<dir>/stats-restore`, or null if there is no such file. */
export function readRestoreStats(dir: string): RestoreStats | null {
  const img = readImage(dir, "stats-restore");
  if (!img) return null;
  if (!img.restore) throw new StatsImageError(`${dir}/stats-restore has no restore section`);
  return img.restore;
}
