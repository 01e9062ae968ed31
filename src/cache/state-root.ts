// Where builder keeps its state when not told: its own module so that a dry run, which only
// reads the local image store, does not load the rest of the cache package.

import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultStateRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BUILDER_ROOT) return env.BUILDER_ROOT;
  if (process.getuid?.() === 0) return '/var/lib/builder';
  return join(env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'builder');
}
