// How many steps run at once, by what they wait on rather than by the number of cores.
//
// A RUN step spends its time waiting on its container: sleeping, on the network, or on CPU the
// kernel schedules among all processes anyway. Capping those at the core count made four
// independent `RUN sleep 1` stages take two seconds on two cores, where BuildKit (no
// max-parallelism by default) takes one. Work done inside this process is what a core bounds:
// copying and checksumming files, diffing a snapshot into a layer, compressing. So:
//
//   containers  many at once; the bound only caps what each holds open (a runc process, its
//               pipes, a mounted snapshot), not the CPU it uses
//   cpu         one per core: COPY/ADD steps, and the diff after a RUN step's container exits
//
// Steps that wait on a registry or a URL (pulls, `ADD <url>`) take no slot: the image source
// bounds its own downloads.

import pLimit, { type LimitFunction } from 'p-limit';
import { availableParallelism } from 'node:os';

/** Containers running at once: bounds open files and processes, not CPU. */
export const MAX_CONTAINERS = 32;

export type StepKind = 'container' | 'cpu' | 'network';

export class Scheduler {
  private readonly containers: LimitFunction;
  private readonly cores: LimitFunction;

  constructor(cores = availableParallelism(), containers = MAX_CONTAINERS) {
    this.cores = pLimit(Math.max(1, cores));
    this.containers = pLimit(Math.max(1, containers));
  }

  /** Runs a step's work once a slot of its kind is free. */
  step<T>(kind: StepKind, work: () => Promise<T>): Promise<T> {
    if (kind === 'network') return work();
    return (kind === 'container' ? this.containers : this.cores)(work);
  }

  /**
   * Runs CPU-bound work of a step that holds no cpu slot (the diff after a container exits).
   * Never call it from inside a `cpu` step: slots are not re-entrant.
   */
  cpu<T>(work: () => Promise<T>): Promise<T> {
    return this.cores(work);
  }
}
