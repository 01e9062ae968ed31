// CPU time of `builder build --dry-run` on each corpus Dockerfile (user + system, from bash's
// `times`), the median over the files: start-up is most of it, so this is the figure to watch
// when adding imports to the CLI's path. builder only; nothing is pulled or written.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh } from '../lib/env.mjs';
import { median } from '../lib/report.mjs';

const CORPUS = fileURLToPath(new URL('../../test/corpus/dockerfiles/', import.meta.url));

export default {
  name: 'dry-run',
  title: 'builder --dry-run of each corpus Dockerfile (CPU, median)',
  extra: true,
  peers: [],
  async prepare(env) {
    const root = join(env.work, 'dry-run-root');
    return {
      run: (tool) => {
        const cpu = readdirSync(CORPUS)
          .sort()
          .map((name) => {
            const { cmd, args } = tool.command({ file: join(CORPUS, name, 'Dockerfile'), context: join(CORPUS, name), root });
            const dry = [...args.slice(0, -1), '--dry-run', args.at(-1)];
            const out = sh('bash', ['-c', '"$@" >/dev/null 2>&1; rc=$?; times; exit $rc', 'bash', cmd, ...dry]).stdout;
            const [user = 0, system = 0] = [...(out.trim().split('\n').at(-1) ?? '').matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
            return (user + system) * 1000;
          });
        return { ms: median(cpu) };
      },
    };
  },
};
