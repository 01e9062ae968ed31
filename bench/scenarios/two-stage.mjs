// A small two-stage build (a script run in a build stage, its output copied into the final one),
// cold and fully cached: the everyday case, where start-up and bookkeeping are most of the time.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildScenario } from '../lib/scenario.mjs';

const common = {
  dockerfile: (base) =>
    `FROM ${base} AS build\nWORKDIR /src\nCOPY app.sh .\nRUN sh app.sh > /out.txt\n\nFROM ${base}\nCOPY --from=build /out.txt /out.txt\nCMD ["cat", "/out.txt"]\n`,
  context: (env) => {
    const dir = join(env.work, 'contexts', 'two-stage');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'app.sh'), 'for i in 1 2 3; do echo "line $i"; done\n');
    return dir;
  },
};

export const twoStageCold = buildScenario({ ...common, name: 'two-stage-cold', title: 'small 2-stage build, cold', goal: 1.0, state: 'cold' });
export const twoStageCached = buildScenario({ ...common, name: 'two-stage-cached', title: 'small 2-stage build, fully cached', goal: 0.7, state: 'cached' });
