// Sizes and durations as Docker's flags take and print them.

/** Docker's RAMInBytes: `64m`, `1.5g`, `512MiB`, `5GB`, plain bytes; binary multiples, case-insensitive. */
export function parseSize(value: string): number {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$/i.exec(value);
  if (!m) throw new Error(`invalid value for size: "${value}" (e.g. 64m, 5GB, or bytes)`);
  const power = ['', 'k', 'm', 'g', 't', 'p'].indexOf((m[2] ?? '').toLowerCase());
  return Math.round(Number(m[1]) * 1024 ** power);
}

/** Go's time.ParseDuration for the units a prune filter uses: `24h`, `2h30m`, `90s`, `1.5h`, `500ms`; in milliseconds. */
export function parseDuration(value: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    part.lastIndex = at;
    const m = part.exec(value);
    if (!m) break;
    total += Number(m[1]) * units[m[2]!]!;
    at = part.lastIndex;
  }
  if (value === '' || at !== value.length) throw new Error(`invalid duration "${value}" (e.g. 24h, 2h30m, 90s)`);
  return total;
}

/** Bytes as docker prints them (go-units HumanSize: decimal, 3 significant digits): `1.23MB`. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let n = bytes;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(3))}${units[i]}`;
}
