// The comma-separated `key=value` lists of command-line flags and RUN --mount (`id=a,src=b`).

/** Splits a CSV field list (`a=1,"b=x,y"`), honouring double quotes as encoding/csv does. */
export function csvFields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i] as string;
    if (ch === '"') {
      if (quoted && spec[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) throw new Error('unterminated quote');
  out.push(cur);
  return out;
}
