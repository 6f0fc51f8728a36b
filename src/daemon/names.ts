// Docker-style random job IDs ("brave_turing"), short and easy to type.
const ADJECTIVES = [
  "admiring",
  "agile",
  "amazing",
  "bold",
  "brave",
  "busy",
  "calm",
  "clever",
  "cool",
  "crisp",
  "daring",
  "eager",
  "elated",
  "epic",
  "fervent",
  "focused",
  "gallant",
  "gentle",
  "happy",
  "hardy",
  "jolly",
  "keen",
  "kind",
  "lucid",
  "magical",
  "mighty",
  "modest",
  "nifty",
  "noble",
  "optimistic",
  "patient",
  "peaceful",
  "quirky",
  "relaxed",
  "serene",
  "sharp",
  "stoic",
  "sturdy",
  "swift",
  "tender",
  "upbeat",
  "vibrant",
  "vigilant",
  "wizardly",
  "zealous",
];
const NAMES = [
  "agnesi",
  "babbage",
  "bell",
  "bohr",
  "cerf",
  "curie",
  "darwin",
  "dijkstra",
  "einstein",
  "euler",
  "faraday",
  "fermi",
  "feynman",
  "gauss",
  "goodall",
  "hamilton",
  "hopper",
  "hypatia",
  "kepler",
  "knuth",
  "lamarr",
  "lamport",
  "liskov",
  "lovelace",
  "maxwell",
  "meitner",
  "mirzakhani",
  "newton",
  "noether",
  "pascal",
  "ritchie",
  "shannon",
  "tesla",
  "thompson",
  "torvalds",
  "turing",
  "wozniak",
  "yalow",
];

const pick = <T>(a: T[]) => a[crypto.getRandomValues(new Uint32Array(1))[0] % a.length];

export function randomJid(taken: (jid: string) => boolean): string {
  for (let i = 0; i < 20; i++) {
    const jid = `${pick(ADJECTIVES)}_${pick(NAMES)}`;
    if (!taken(jid)) return jid;
  }
  // The name space is small; fall back to a random suffix rather than loop forever.
  for (;;) {
    const jid = `${pick(ADJECTIVES)}_${pick(NAMES)}_${crypto.randomUUID().slice(0, 6)}`;
    if (!taken(jid)) return jid;
  }
}

/** JIDs end up in file names and URLs: keep them to a safe alphabet. */
export const JID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
