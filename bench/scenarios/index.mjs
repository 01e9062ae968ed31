// Every scenario, in the order the bench runs and reports them. `extra` ones run only when named
// (`--scenario NAME` or `--scenario all`); `peers: []` marks a builder-only figure.
import basePull from './base-pull.mjs';
import bigRun from './big-run.mjs';
import dryRun from './dry-run.mjs';
import { orderBad, orderGood } from './instruction-order.mjs';
import parallelStages from './parallel-stages.mjs';
import push from './push.mjs';
import { remoteCache, remoteCacheInline } from './remote-cache.mjs';
import runSteps from './run-steps.mjs';
import { sourceTreeCold, sourceTreeEdit, sourceTreeNoop } from './source-tree.mjs';
import stop from './stop.mjs';
import { transferPull, transferPush } from './transfer.mjs';
import { twoStageCached, twoStageCold } from './two-stage.mjs';

/** @type {import('../lib/scenario.mjs').Scenario[]} */
export const scenarios = [
  parallelStages,
  sourceTreeEdit,
  sourceTreeNoop,
  sourceTreeCold,
  basePull,
  runSteps,
  twoStageCold,
  twoStageCached,
  orderBad,
  orderGood,
  push,
  remoteCache,
  remoteCacheInline,
  stop,
  bigRun,
  dryRun,
  transferPush,
  transferPull,
];

/** The scenarios `names` select (none: every one not marked extra; `all`: every one), in run order. */
export function selectScenarios(names = []) {
  if (names.length === 0) return scenarios.filter((s) => !s.extra);
  if (names.includes('all')) return scenarios;
  const unknown = names.filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}`);
  return scenarios.filter((s) => names.includes(s.name));
}
