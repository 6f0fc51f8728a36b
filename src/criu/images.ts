// Reading what CRIU wrote into its images, for the few facts that only CRIU saw at the moment the
// tree was frozen (e.g. where a file's offset stood). A minimal protobuf reader, enough for
// files.img: a magic pair, then entries, each a little-endian u32 size and a FileEntry message.
import { join } from "node:path";

/** One protobuf field: its number, and a varint value or the bytes of a length-delimited one. */
interface Field {
  n: number;
  varint?: number;
  bytes?: Uint8Array;
}

function varint(b: Uint8Array, at: number): [number, number] {
  let v = 0, mul = 1, i = at;
  for (;;) {
    if (i >= b.length) throw new Error("truncated varint");
    const byte = b[i++];
    v += (byte & 0x7f) * mul;
    if (!(byte & 0x80)) return [v, i];
    mul *= 128;
  }
}

function fields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  while (i < b.length) {
    const [tag, j] = varint(b, i);
    i = j;
    const n = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) {
      const [v, k] = varint(b, i);
      out.push({ n, varint: v });
      i = k;
    } else if (wire === 2) {
      const [len, k] = varint(b, i);
      if (k + len > b.length) throw new Error("truncated field");
      out.push({ n, bytes: b.subarray(k, k + len) });
      i = k + len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unknown wire type ${wire}`);
  }
  return out;
}

// images/files.proto: file_entry { type = 1; id = 2; reg = 3 (reg_file_entry) };
// regfile.proto: reg_file_entry { id = 1; flags = 2; pos = 3; fown = 5; name = 6; ... }
const FILE_ENTRY_REG = 3, REG_FLAGS = 2, REG_POS = 3, REG_NAME = 6;

/**
 * The open file descriptions of the regular file `path` in the dumped tree as CRIU recorded them
 * at the freeze (its open(2) flags and offset), from `imagesDir`/files.img. Throws if the image
 * cannot be read.
 */
export function criuFileOpens(imagesDir: string, path: string): { flags: number; pos: number }[] {
  const b = Deno.readFileSync(join(imagesDir, "files.img"));
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: { flags: number; pos: number }[] = [];
  const name = new TextEncoder().encode(path);
  for (let i = 8; i < b.length;) { // (after the two magic numbers)
    if (i + 4 > b.length) throw new Error("truncated entry size");
    const size = view.getUint32(i, true);
    if (i + 4 + size > b.length) throw new Error("truncated entry");
    const entry = b.subarray(i + 4, i + 4 + size);
    i += 4 + size;
    const reg = fields(entry).find((f) => f.n === FILE_ENTRY_REG)?.bytes;
    if (!reg) continue;
    const rf = fields(reg);
    const n = rf.find((f) => f.n === REG_NAME)?.bytes;
    if (n && n.length === name.length && n.every((c, k) => c === name[k])) {
      out.push({
        flags: rf.find((f) => f.n === REG_FLAGS)?.varint ?? 0,
        pos: rf.find((f) => f.n === REG_POS)?.varint ?? 0,
      });
    }
  }
  return out;
}

// pipe-data.proto: pipe_data_entry { pipe_id = 1; bytes = 2; size = 3 }, each followed by its bytes
const PIPE_ID = 1, PIPE_BYTES = 2;

/**
 * What pipe `ino` held when CRIU froze the tree (pipes-data.img; CRIU saves it for every pipe of
 * the tree, also one it was told is external, whose data it then does not restore), or null.
 */
export function criuPipeData(imagesDir: string, ino: number): Uint8Array | null {
  let b: Uint8Array;
  try {
    b = Deno.readFileSync(join(imagesDir, "pipes-data.img"));
  } catch {
    return null; // (no pipe held data)
  }
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 8; i + 4 <= b.length;) {
    const size = view.getUint32(i, true);
    const f = fields(b.subarray(i + 4, i + 4 + size));
    const id = f.find((x) => x.n === PIPE_ID)?.varint, n = f.find((x) => x.n === PIPE_BYTES)?.varint ?? 0;
    const data = i + 4 + size;
    if (data + n > b.length) throw new Error("truncated pipe data");
    if (id === ino) return b.subarray(data, data + n);
    i = data + n;
  }
  return null;
}
