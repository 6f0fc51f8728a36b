// Byte counts in messages from the daemon.
export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, i = 0;
  while (v >= 1024 && i < units.length - 1) v /= 1024, i++;
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
