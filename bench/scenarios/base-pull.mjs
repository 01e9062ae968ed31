// A base image the size of debian:bookworm (about 50 MB gzipped, one layer) pulled cold from the
// local registry, then one RUN: download, decompression and unpacking dominate.
import { buildScenario } from '../lib/scenario.mjs';

export default buildScenario({
  name: 'base-pull',
  title: 'distro-sized base (50 MB gzip): cold pull + one RUN',
  goal: 1.0,
  base: 'distro',
  state: 'cold',
  dockerfile: (base) => `FROM ${base}\nRUN echo hello > /hello\n`,
});
