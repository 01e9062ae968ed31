// Thirty trivial RUN steps from cold: the fixed cost of a step (container start, snapshot, commit).
import { buildScenario } from '../lib/scenario.mjs';

export default buildScenario({
  name: 'run-steps',
  title: '30 trivial RUN steps, cold',
  goal: 0.8,
  state: 'cold',
  dockerfile: (base) => `FROM ${base}\n${Array.from({ length: 30 }, (_, i) => `RUN echo step-${i} > /step-${i}`).join('\n')}\n`,
});
