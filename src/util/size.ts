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

/** A duration in milliseconds as docker prints ages (go-units HumanDuration): `5 minutes`, `About an hour`, `2 weeks`. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(ms / 60_000);
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}
