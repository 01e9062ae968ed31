// Columns as docker's CLI prints them (Go's tabwriter): each column as wide as its widest cell
// plus `padding`, at least `minWidth`; the last column is not padded.

export function table(rows: readonly string[][], { minWidth = 0, padding = 2 }: { minWidth?: number; padding?: number } = {}): string {
  const widths = rows[0]!.map((_, i) => Math.max(minWidth, ...rows.map((r) => (r[i] ?? '').length + padding)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('').trimEnd()).join('\n');
}

/** `docker images`, `docker history`: tabwriter.NewWriter(out, 10, 1, 3, ' ', 0). */
export function dockerTable(rows: readonly string[][]): string {
  return table(rows, { minWidth: 10, padding: 3 });
}
