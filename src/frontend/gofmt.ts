// Go-style formatting for history entries: BuildKit writes `created_by` with fmt verbs (%q, %v)
// and time.Duration strings, and users compare those texts with what Docker produces.

/** Go's `%q` of a []string: `["a" "b c"]`. */
export function goQuotedList(items: readonly string[]): string {
  return `[${items.map((s) => JSON.stringify(s)).join(' ')}]`;
}

/** Go's `%v` of a []string: `[a b c]`. */
export function goList(items: readonly string[]): string {
  return `[${items.join(' ')}]`;
}

const NS = { us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 } as const;

function fraction(value: number, unit: number): string {
  const whole = Math.floor(value / unit);
  const rest = value - whole * unit;
  if (rest === 0) return String(whole);
  const digits = String(unit).length - 1;
  return `${whole}.${String(rest).padStart(digits, '0').replace(/0+$/, '')}`;
}

/** Go's time.Duration.String for a duration in nanoseconds: `0s`, `1.5ms`, `1m30s`, `1h0m0s`. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const sign = ns < 0 ? '-' : '';
  let u = Math.abs(Math.round(ns));
  if (u < NS.us) return `${sign}${u}ns`;
  if (u < NS.ms) return `${sign}${fraction(u, NS.us)}µs`;
  if (u < NS.s) return `${sign}${fraction(u, NS.ms)}ms`;
  const h = Math.floor(u / NS.h);
  u -= h * NS.h;
  const m = Math.floor(u / NS.m);
  u -= m * NS.m;
  const s = `${fraction(u, NS.s)}s`;
  if (h > 0) return `${sign}${h}h${m}m${s}`;
  if (m > 0) return `${sign}${m}m${s}`;
  return sign + s;
}

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration (`300ms`, `1.5h`, `2h45m`), in nanoseconds; throws on bad input. */
export function parseGoDuration(text: string): number {
  if (text === '0' || text === '+0' || text === '-0') return 0;
  const m = /^([-+]?)(.+)$/u.exec(text);
  const body = m?.[2] ?? '';
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/uy;
  let total = 0;
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const part = re.exec(body);
    if (!part) {
      const missingUnit = /^[\d.]+$/u.test(body.slice(pos));
      throw new Error(`${missingUnit ? 'missing unit in' : 'invalid'} duration "${text}"`);
    }
    total += Number(part[1]) * (UNIT_NS[part[2] as string] ?? 0);
    pos = re.lastIndex;
  }
  if (body === '') throw new Error(`invalid duration "${text}"`);
  return Math.round(m?.[1] === '-' ? -total : total);
}
