import { assertEquals, assertThrows } from "../testing/asserts.ts";
import { criuFileOpens, criuPipeData } from "./images.ts";

/** A files.img as CRIU writes it: two magic numbers, then size-prefixed file_entry messages. */
function filesImg(entries: { name: string; pos: number }[]): Uint8Array {
  const enc = new TextEncoder();
  const varint = (v: number) => {
    const out: number[] = [];
    do {
      out.push((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      v = Math.floor(v / 128);
    } while (v > 0);
    return out;
  };
  const bytes = (n: number, b: number[]) => [(n << 3) | 2, ...varint(b.length), ...b];
  const out: number[] = [0x19, 0x43, 0x56, 0x54, 0x38, 0x31, 0x30, 0x56];
  entries.forEach((e, i) => {
    // reg_file_entry: id, flags, pos, fown (empty), name
    const reg = [
      0x08,
      i + 1,
      0x10,
      1,
      0x18,
      ...varint(e.pos),
      ...bytes(5, []),
      ...bytes(6, [...enc.encode(e.name)]),
    ];
    const entry = [0x08, 1, 0x10, i + 1, ...bytes(3, reg)];
    out.push(entry.length & 0xff, (entry.length >> 8) & 0xff, 0, 0, ...entry);
  });
  return new Uint8Array(out);
}

Deno.test("criuFileOpens: the flags and offset of each description of a file in files.img", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const img = filesImg([{ name: "/usr/bin/python3", pos: 0 }, {
      name: "/tmp/out.log",
      pos: 1_000_000_007,
    }]);
    Deno.writeFileSync(`${dir}/files.img`, img);
    assertEquals(criuFileOpens(dir, "/tmp/out.log"), [{ flags: 1, pos: 1_000_000_007 }]);
    assertEquals(criuFileOpens(dir, "/tmp/out"), []);
    Deno.writeFileSync(`${dir}/files.img`, img.subarray(0, img.length - 3));
    assertThrows(() => criuFileOpens(dir, "/tmp/out.log"), Error, "truncated");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("criuPipeData: the bytes CRIU saved for one pipe, found by its inode", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const enc = new TextEncoder();
    const entry = (ino: number[], data: string) => {
      const pb = [0x08, ...ino, 0x10, data.length, 0x18, 0x80, 0x80, 0x04];
      return [pb.length, 0, 0, 0, ...pb, ...enc.encode(data)];
    };
    // (pipe 21189497 as a varint: f9 a6 8d 0a; pipe 5)
    const img = [
      0x19,
      0x43,
      0x56,
      0x54,
      0x09,
      0x37,
      0x45,
      0x56,
      ...entry([5], "other"),
      ...entry([0xf9, 0xa6, 0x8d, 0x0a], "line1\nline2\n"),
    ];
    Deno.writeFileSync(`${dir}/pipes-data.img`, new Uint8Array(img));
    assertEquals(new TextDecoder().decode(criuPipeData(dir, 21189497)!), "line1\nline2\n");
    assertEquals(new TextDecoder().decode(criuPipeData(dir, 5)!), "other");
    assertEquals(criuPipeData(dir, 6), null);
    Deno.removeSync(`${dir}/pipes-data.img`);
    assertEquals(criuPipeData(dir, 5), null);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
