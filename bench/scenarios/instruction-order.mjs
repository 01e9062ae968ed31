// The instruction-ordering lesson: the same Node-style app with its dependency install after a
// broad `COPY . .` (every source edit re-runs the install) or after copying only package.json
// (an edit re-runs only what follows `COPY . .`). Both measured after a one-file source edit.
// The install works offline: per dependency it writes a module and waits 50 ms, as a download would.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildScenario } from '../lib/scenario.mjs';

const DEPS = 40;
const INSTALL =
  "RUN for dep in $(sed -n 's/^ *\"\\(dep[0-9]*\\)\".*/\\1/p' package.json); do mkdir -p node_modules/$dep && head -c 100000 /dev/urandom > node_modules/$dep/index.js && sleep 0.05; done";
const BUILD = 'RUN mkdir -p dist && cat src/*.js > dist/app.js';

function context(env) {
  const dir = join(env.work, 'contexts', 'node-app');
  mkdirSync(join(dir, 'src'), { recursive: true });
  const deps = Array.from({ length: DEPS }, (_, i) => `    "dep${i}": "^1.${i}.0"`).join(',\n');
  writeFileSync(join(dir, 'package.json'), `{\n  "name": "app",\n  "dependencies": {\n${deps}\n  }\n}\n`);
  for (let i = 0; i < 300; i++) writeFileSync(join(dir, 'src', `m${i}.js`), `export const v${i} = ${i};\n`.repeat(30));
  return dir;
}

const edit = (env, round) => writeFileSync(join(env.work, 'contexts', 'node-app', 'src', 'm0.js'), `export const v0 = ${JSON.stringify(`round ${round}`)};\n`);

export const orderBad = buildScenario({
  name: 'order-copy-all-first',
  title: 'Node app, COPY . . before the install, after a source edit',
  state: 'edit',
  context,
  edit,
  dockerfile: (base) => `FROM ${base}\nWORKDIR /app\nCOPY . .\n${INSTALL}\n${BUILD}\n`,
});

export const orderGood = buildScenario({
  name: 'order-package-json-first',
  title: 'Node app, package.json + install first, after a source edit',
  state: 'edit',
  context,
  edit,
  dockerfile: (base) => `FROM ${base}\nWORKDIR /app\nCOPY package.json .\n${INSTALL}\nCOPY . .\n${BUILD}\n`,
});
