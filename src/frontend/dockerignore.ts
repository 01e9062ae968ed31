// .dockerignore parsing with Docker's rules (moby/patternmatcher ignorefile.ReadAll). Matching is
// done elsewhere (with @balena/dockerignore); this only turns the file into a pattern list.

import { cleanPath } from './paths.js';

/**
 * Patterns in file order. Lines starting with `#` are comments; blank lines are skipped;
 * patterns are trimmed and cleaned (`filepath.Clean`), a leading `/` is removed (paths are
 * relative to the context root) and `!` exceptions are kept with their `!`.
 */
export function parseDockerignore(text: string): string[] {
  const patterns: string[] = [];
  const lines = text.split('\n');
  if (text.endsWith('\n')) lines.pop();
  lines.forEach((raw, i) => {
    let line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (i === 0) line = line.replace(/^\uFEFF/, '');
    // Comments are recognised before trimming, as in Docker: "  # x" is a pattern.
    if (line.startsWith('#')) return;
    let pattern = line.trim();
    if (pattern === '') return;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    patterns.push(invert ? '!' + pattern : pattern);
  });
  return patterns;
}
