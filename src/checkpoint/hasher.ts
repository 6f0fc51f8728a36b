// SHA-256 of checkpoint files without adding their read time to a dump: CRIU's page images are
// hashed while CRIU is still appending to them (on the other core), so when CRIU exits only the
// tail and the small images remain.

import { createHash, type Hash } from "node:crypto";
import { join } from "node:path";

export interface FileDigest {
  name: string;
  size: number;
  sha256: string;
}

const CHUNK = 4 << 20;

/** Awaited before each chunk: lets low-priority hashing step aside (see Checksums.hold). */
export type Pace = () => Promise<void> | void;

async function hashRange(
  file: Deno.FsFile,
  hash: Hash,
  from: number,
  to: number,
  buf: Uint8Array,
  pace?: Pace,
): Promise<number> {
  let off = from;
  await file.seek(from, Deno.SeekMode.Start);
  while (off < to) {
    if (pace) await pace();
    const n = await file.read(buf.subarray(0, Math.min(buf.length, to - off)));
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    off += n;
  }
  return off;
}

export async function hashFile(path: string, pace?: Pace): Promise<{ size: number; sha256: string }> {
  const file = await Deno.open(path);
  try {
    const hash = createHash("sha256");
    const size = (await file.stat()).size;
    const got = await hashRange(file, hash, 0, size, new Uint8Array(CHUNK), pace);
    return { size: got, sha256: hash.digest("hex") };
  } finally {
    file.close();
  }
}

/** Only these grow by appending while CRIU runs; everything else is hashed at the end. */
const TAILABLE = /^pages-\d+\.img$/;

export class DirHasher {
  readonly #tracked = new Map<string, { file: Deno.FsFile; hash: Hash; offset: number }>();
  readonly #buf = new Uint8Array(CHUNK);
  #stopped = false;
  #loop: Promise<void> | null = null;
  #wake: () => void = () => {};

  constructor(public dir: string, readonly exclude: Set<string> = new Set()) {}

  /** The directory was renamed (open files keep being read; new listings use the new path). */
  relocate(dir: string): void {
    this.dir = dir;
  }

  /** Every file with its size now, without waiting for the checksums. */
  list(): { name: string; size: number }[] {
    const out: { name: string; size: number }[] = [];
    for (const e of Deno.readDirSync(this.dir)) {
      if (e.isFile && !this.exclude.has(e.name)) {
        out.push({ name: e.name, size: Deno.statSync(join(this.dir, e.name)).size });
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Starts following the page images as CRIU writes them. */
  start(): void {
    this.#loop = this.#follow();
  }

  async #follow() {
    while (!this.#stopped) {
      try {
        for (const e of Deno.readDirSync(this.dir)) {
          if (!e.isFile || !TAILABLE.test(e.name) || this.#tracked.has(e.name)) continue;
          this.#tracked.set(e.name, {
            file: await Deno.open(join(this.dir, e.name)),
            hash: createHash("sha256"),
            offset: 0,
          });
        }
        for (const t of this.#tracked.values()) {
          if (this.#stopped) break;
          const size = (await t.file.stat()).size;
          if (size > t.offset) t.offset = await hashRange(t.file, t.hash, t.offset, size, this.#buf);
        }
      } catch { /* the dir may not exist yet */ }
      // Sleep a little between passes, but wake at once when finish() is called.
      await new Promise<void>((r) => {
        const t = setTimeout(r, 20);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /**
   * Call once the writer is done: hashes what is left and returns every file, sorted by name.
   * `pace`: for a finish that runs in the background (it may be paused).
   */
  async finish(pace?: Pace): Promise<FileDigest[]> {
    this.#stopped = true;
    this.#wake();
    await this.#loop;
    const out: FileDigest[] = [];
    for (const e of Deno.readDirSync(this.dir)) {
      if (!e.isFile || this.exclude.has(e.name)) continue;
      const t = this.#tracked.get(e.name);
      if (t) {
        const size = (await t.file.stat()).size;
        t.offset = await hashRange(t.file, t.hash, t.offset, size, this.#buf, pace);
        t.file.close();
        out.push({ name: e.name, size: t.offset, sha256: t.hash.digest("hex") });
      } else {
        out.push({ name: e.name, ...(await hashFile(join(this.dir, e.name), pace)) });
      }
    }
    this.#tracked.clear();
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Abandon (on failure): close what is open. */
  abort(): void {
    this.#stopped = true;
    for (const t of this.#tracked.values()) t.file.close();
    this.#tracked.clear();
  }
}
