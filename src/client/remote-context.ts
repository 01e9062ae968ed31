// Build contexts that are not a local directory. Kept apart from input.ts (which loads the
// Dockerfile parser) so that the command line can refuse one before loading anything.

/**
 * Why a build context `path` cannot be used yet, when it is not a local directory: a tar on
 * stdin (`-`), a Git repository or a URL (docker's urlutil: `git@`, `git://`, `github.com/`, an
 * http(s) URL ending in `.git`).
 */
export function unsupportedContext(path: string): string | undefined {
  if (path === '-') return 'a build context read from stdin ("-") is not supported yet: give a directory';
  if (/^(git@|git:\/\/|github\.com\/)/.test(path) || /^https?:\/\/\S*\.git(#.*)?$/.test(path)) {
    return `a Git repository as build context ("${path}") is not supported yet: clone it and give the directory`;
  }
  if (/^https?:\/\//.test(path)) return `a URL as build context ("${path}") is not supported yet: download it and give the directory`;
  return undefined;
}
