// The comma-separated `key=value` lists of command-line flags and RUN --mount (`id=a,src=b`), read
// as Go's encoding/csv reads one record (which buildx and BuildKit use for them): a field that
// starts with a double quote ends at the closing one, `""` in it is one quote; a quote anywhere
// else is an error, not a toggle.

/** The fields of `line` (none for an empty line); throws saying which field is malformed. */
export function csvFields(line: string): string[] {
  const fields: string[] = [];
  if (line === '') return fields;
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = '';
      for (i++; ; ) {
        const quote = line.indexOf('"', i);
        if (quote < 0) throw new Error(`unterminated quote in field ${fields.length + 1}`);
        value += line.slice(i, quote);
        i = quote + 1;
        if (line[i] !== '"') break;
        value += '"';
        i++;
      }
      if (i < line.length && line[i] !== ',') {
        throw new Error(`field ${fields.length + 1} goes on after its closing quote (a quote inside quotes is written "")`);
      }
      fields.push(value);
    } else {
      const comma = line.indexOf(',', i);
      const end = comma < 0 ? line.length : comma;
      const value = line.slice(i, end);
      if (value.includes('"')) throw new Error(`stray quote in field ${fields.length + 1} "${value}" (quote the whole field)`);
      fields.push(value);
      i = end;
    }
    if (i >= line.length) return fields;
    i++; // the comma
  }
}
