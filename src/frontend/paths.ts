// Slash-separated path helpers with Go's path.Clean semantics (Node's path.posix.normalize keeps
// trailing slashes and turns "" into ".", which is not what Docker does).

/** Lexically cleans a path like Go's path.Clean: no `.`/`..` elements, no doubled or trailing `/`. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

/** Joins and cleans, like Go's path.Join (empty elements are ignored). */
export function joinPath(...parts: string[]): string {
  const nonEmpty = parts.filter((p) => p !== '');
  return nonEmpty.length === 0 ? '' : cleanPath(nonEmpty.join('/'));
}

export function isAbsPath(p: string): boolean {
  return p.startsWith('/');
}

/** A path names a directory explicitly when it ends in `/` or `/.`, or is `.` itself. */
export function hasTrailingSlash(p: string): boolean {
  return p.endsWith('/') || p.endsWith('/.') || p === '.';
}
