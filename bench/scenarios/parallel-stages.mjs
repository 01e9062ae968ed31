// Four independent stages that each wait a second, then one that copies from each: a step that
// sleeps (or waits on the network) needs no core, so all four can run at once on two cores.
import { buildScenario } from '../lib/scenario.mjs';

const stages = ['a', 'b', 'c', 'd'];

export default buildScenario({
  name: 'parallel-stages',
  title: '4 parallel stages of RUN sleep 1, then COPY --from each',
  goal: 1.1,
  state: 'no-cache',
  dockerfile: (base) =>
    [
      ...stages.map((s) => `FROM ${base} AS ${s}\nRUN sleep 1 && echo ${s} > /${s}\n`),
      `FROM ${base}`,
      ...stages.map((s) => `COPY --from=${s} /${s} /${s}`),
      '',
    ].join('\n'),
});
