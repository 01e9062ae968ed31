// A real-sized source tree as the context (about 7.5k files, 80 MB, see fixtures.mjs), copied
// whole and then read by a RUN: after one file changed, with nothing changed, and cold.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildScenario } from '../lib/scenario.mjs';

export const SOURCE_DOCKERFILE = (base) => `FROM ${base}\nWORKDIR /app\nCOPY . .\nRUN find . -type f | wc -l > /tmp/files\n`;

/** Changes one text file of the shared source tree (a new last line, unique per call). */
export async function editSourceTree(env, tag) {
  const { dir, textFiles } = await env.sourceTree();
  appendFileSync(join(dir, textFiles[0]), `// edit ${tag}\n`);
}

const common = { dockerfile: SOURCE_DOCKERFILE, context: async (env) => (await env.sourceTree()).dir };

export const sourceTreeEdit = buildScenario({
  ...common,
  name: 'source-edit',
  title: 'source tree context: COPY . . + RUN, one file edited',
  goal: 0.5,
  state: 'edit',
  edit: (env, round) => editSourceTree(env, `round ${round}`),
});

export const sourceTreeNoop = buildScenario({
  ...common,
  name: 'source-noop',
  title: 'source tree context: nothing changed',
  goal: 0.5,
  state: 'cached',
});

export const sourceTreeCold = buildScenario({
  ...common,
  name: 'source-cold',
  title: 'source tree context: cold',
  goal: 1.0,
  state: 'cold',
});
