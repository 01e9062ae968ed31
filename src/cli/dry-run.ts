// `builder build --dry-run`: prints the plan (stages, steps, vertex digests, each RUN step's mounts) and the warnings.
// Loads only the frontend and the local store reader (src/client/plan.ts), never the build machinery.

import type { BuildOptions } from '../client/build.js';
import { formatPlan, plan } from '../client/plan.js';
import { stderr, stdout } from './output.js';
import { formatWarning } from './progress.js';

export async function runDryRun(opts: Omit<BuildOptions, 'onProgress' | 'signal'>): Promise<number> {
  const result = await plan({
    context: opts.context,
    ...(opts.dockerfile !== undefined ? { dockerfile: opts.dockerfile } : {}),
    ...(opts.dockerfileText !== undefined ? { dockerfileText: opts.dockerfileText } : {}),
    ...(opts.buildContexts ? { buildContexts: opts.buildContexts } : {}),
    ...(opts.extraHosts ? { extraHosts: opts.extraHosts } : {}),
    ...(opts.ulimits ? { ulimits: opts.ulimits } : {}),
    ...(opts.shmSize !== undefined ? { shmSize: opts.shmSize } : {}),
    ...(opts.buildArgs ? { buildArgs: opts.buildArgs } : {}),
    ...(opts.target !== undefined ? { target: opts.target } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(opts.root !== undefined ? { root: opts.root } : {}),
    ...(opts.network ? { network: opts.network } : {}),
    ...(opts.allow ? { allow: opts.allow } : {}),
    ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
  });
  for (const w of result.warnings) {
    stderr.write(`${formatWarning(w)}\n`);
  }
  for (const ref of result.unresolved) {
    stderr.write(`NOTE: ${ref} is not in the local store; not pulled (dry run): its steps' digests will differ once it is resolved\n`);
  }
  stdout.write(formatPlan(result));
  return 0;
}
