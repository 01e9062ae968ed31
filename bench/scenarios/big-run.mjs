// One RUN that writes 100 MB in 10k files, every step run (--no-cache): the cost of diffing and
// committing a big layer.
import { buildScenario } from '../lib/scenario.mjs';

const BIG =
  'mkdir -p /data/0 && head -c 786432 /dev/urandom | base64 -w 0 > /tmp/r' +
  ' && for j in $(seq 0 99); do dd if=/tmp/r of=/data/0/$j bs=10240 skip=$j count=1 2>/dev/null; done' +
  ' && for d in $(seq 1 99); do cp -r /data/0 /data/$d; done && rm /tmp/r';

export default buildScenario({
  name: 'big-run',
  title: 'RUN writing 100 MB in 10k files (--no-cache)',
  extra: true,
  state: 'no-cache',
  dockerfile: (base) => `FROM ${base}\nRUN ${BIG}\n`,
});
