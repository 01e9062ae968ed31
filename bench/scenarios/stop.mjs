// How long a build takes to stop when interrupted in the middle of a RUN step: from SIGINT to the
// command's exit (builder has stopped the container and removed the step's snapshot by then).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { timed } from '../lib/env.mjs';
import { writeDockerfile } from '../lib/scenario.mjs';

const MARKER = 'ready-42';

export default {
  name: 'stop',
  title: 'SIGINT during a RUN step: signal to exit',
  extra: true,
  async prepare(env) {
    // The marker is computed, so it shows only once the command runs, not in the step's name.
    const file = writeDockerfile(env, 'stop', `FROM ${await env.image('busybox')}\nARG RUN_ID\nRUN echo ready-$((40+2)) && sleep 600\n`);
    const context = join(env.work, 'contexts', 'stop');
    mkdirSync(context, { recursive: true });
    return {
      run: async (tool, round) => {
        // A new RUN_ID per run: the step misses the cache and starts its container.
        const { cmd, args, env: vars } = tool.command({ file, context, buildArgs: { RUN_ID: `${round}` } });
        let signalled;
        await timed(cmd, args, {
          env: vars,
          allowFailure: true,
          onOutput: (text, child) => {
            if (signalled === undefined && text.includes(MARKER)) {
              signalled = performance.now();
              child.kill('SIGINT');
            }
          },
        });
        if (signalled === undefined) throw new Error(`${tool.name} ended before its RUN step started`);
        return { ms: performance.now() - signalled };
      },
    };
  },
};
