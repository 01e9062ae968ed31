// The stages of a Dockerfile and how they depend on each other: the instructions grouped into
// stages, what each `COPY --from` and `RUN --mount=from=` names (a stage of the file, else an
// image), and the walks over the graph they make (cycles, what a target needs, an order with
// every stage after those it depends on). Walks use explicit stacks: a file can chain thousands
// of stages. Knows which instruction refers to which stage, not what any instruction does.

import type { Platform } from '../definition/index.js';
import type { LocalContext, NamedContext, ResolvedImage } from './compile.js';
import { DockerfileError } from './errors.js';
import { decodeInstruction, errorAt, type ArgCommand, type Command, type DecodeContext, type FromCommand } from './instructions.js';
import type { Linter } from './lint.js';
import { mountFrom } from './mounts.js';
import type { Instruction } from './parser.js';
import type { ShellLex } from './shell-lexer.js';
import type { StageState } from './stage-state.js';
import { suggest } from './suggest.js';

/** What a COPY --from or a RUN --mount from= names. */
export type FromSource =
  /** `state()` is undefined until that stage is compiled (it must come earlier in the file). */
  | { kind: 'stage'; index: number; name: string; state: () => StageState | undefined }
  /** Not a stage: Docker would take it as an image; `hint` is a stage with a close name. */
  | {
      kind: 'image';
      ref: string;
      hint?: string;
      /** Set once resolved (compile resolves every image a needed stage copies or mounts from). */
      resolved?: { ref: string; platform: Platform };
      /** Why it could not be resolved: the resolver's error, kept as the cause of the one reported. */
      error?: unknown;
    }
  /** A named build context that is a local directory. */
  | { kind: 'local'; context: LocalContext };

export type StageBase = { kind: 'scratch' } | { kind: 'stage'; stage: Stage } | { kind: 'image'; ref: string } | { kind: 'local'; context: LocalContext };

export interface Stage {
  index: number;
  name?: string;
  from: FromCommand;
  commands: Command[];
  /** Base name after global ARG expansion. */
  baseName: string;
  /** From `FROM --platform=…`. */
  platform?: Platform;
  base: StageBase;
  /** The platform the stage's image declares: its base image's, or the target's for scratch. */
  imagePlatform?: Platform;
  /** ONBUILD triggers inherited from the base, run before the stage's own instructions. */
  triggers?: Command[];
  resolved?: ResolvedImage;
  /** Final state, once compiled. */
  state?: StageState;
}

/** The stages of one Dockerfile, and the ARGs before its first FROM. */
export class StageGraph {
  readonly stages: Stage[] = [];
  readonly metaArgs: ArgCommand[] = [];
  /** Stages by name (names are unique). */
  private readonly byName = new Map<string, Stage>();
  private names: string[] | undefined;
  /** By instruction, what each of its `from`s (as written) names. */
  private readonly fromSources = new Map<Command, Map<string, FromSource>>();

  /** Checks every instruction (throwing a DockerfileError at the first bad one) and groups them. */
  constructor(
    instructions: readonly Instruction[],
    private readonly ctx: DecodeContext,
    private readonly lex: ShellLex,
    private readonly lint: Linter,
    private readonly namedContext: (name: string) => NamedContext | undefined = () => undefined,
  ) {
    this.decode(instructions);
  }

  /** The stage named `name` (lower-case), wherever it is in the file. */
  named(name: string): Stage | undefined {
    return this.byName.get(name);
  }

  /** What `from` (as written in `cmd`) names, once resolveFromSources has seen `cmd`. */
  fromSource(cmd: Command, from: string): FromSource | undefined {
    return this.fromSources.get(cmd)?.get(from);
  }

  /** Everything `cmd` copies or mounts from, once resolveFromSources has seen it. */
  sourcesOf(cmd: Command): Iterable<FromSource> {
    return this.fromSources.get(cmd)?.values() ?? [];
  }

  /** Checks every instruction and groups them into global ARGs and stages. */
  private decode(instructions: readonly Instruction[]): void {
    const byName = this.byName;
    for (const instr of instructions) {
      const cmd = decodeInstruction(instr, this.ctx);
      if (cmd.kind === 'FROM') {
        const stage: Stage = { index: this.stages.length, from: cmd, commands: [], baseName: cmd.baseName, base: { kind: 'scratch' } };
        if (cmd.stageName !== undefined) {
          const previous = byName.get(cmd.stageName);
          if (previous) {
            throw errorAt(instr, this.ctx, `duplicate stage name "${cmd.stageName}" (already used on line ${previous.from.instr.startLine})`);
          }
          this.lint.stageName(instr.startLine, cmd.stageName);
          stage.name = cmd.stageName;
          byName.set(cmd.stageName, stage);
        }
        this.stages.push(stage);
      } else if (this.stages.length === 0) {
        if (cmd.kind !== 'ARG') {
          throw errorAt(instr, this.ctx, `${instr.keyword} cannot come before the first FROM (only ARG can)`);
        }
        this.metaArgs.push(cmd);
      } else {
        (this.stages[this.stages.length - 1] as Stage).commands.push(cmd);
      }
    }
    if (this.stages.length === 0) {
      throw new DockerfileError('the Dockerfile has no FROM instruction, so there is no stage to build', { file: this.ctx.file, line: 0 });
    }
  }

  /** The names of the named stages, in file order. */
  private stageNames(): string[] {
    this.names ??= this.stages.flatMap((s) => (s.name ? [s.name] : []));
    return this.names;
  }

  /** The stage named `wanted` (any case); the last stage when none is asked for. */
  target(wanted: string | undefined): Stage {
    if (wanted === undefined || wanted === '') return this.stages[this.stages.length - 1] as Stage;
    const found = this.stages.find((s) => s.name === wanted.toLowerCase());
    if (found) return found;
    const names = this.stageNames();
    const hint = suggest(wanted, names);
    const list = names.length > 0 ? `stages in ${this.ctx.file}: ${names.join(', ')}` : `${this.ctx.file} has no named stages (name one with FROM <image> AS <name>)`;
    throw new DockerfileError(`target stage "${wanted}" could not be found${hint ? ` (did you mean "${hint}"?)` : ''}; ${list}`, {
      file: this.ctx.file,
      line: 0,
    });
  }

  /** How errors and progress name a stage: its name, else `stage-<index>`. */
  label(stage: Stage): string {
    return stage.name ?? `stage-${stage.index}`;
  }

  /**
   * What the `from`s of an instruction name (COPY --from=, RUN --mount=…,from=): a stage of this
   * file by name or index, otherwise (as in Docker) an image.
   */
  resolveFromSources(cmd: Command): void {
    if ((cmd.kind === 'COPY' || cmd.kind === 'ADD') && cmd.from !== undefined) this.resolveFrom(cmd, cmd.from, 'COPY --from');
    if (cmd.kind !== 'RUN') return;
    for (const spec of (cmd.flags.get('mount') as string[] | undefined) ?? []) {
      let from: string | undefined;
      try {
        from = mountFrom(spec);
      } catch {
        continue; // a malformed spec is reported with its line when the RUN is compiled
      }
      if (from !== undefined) this.resolveFrom(cmd, from, 'RUN --mount from');
    }
  }

  private resolveFrom(cmd: Command, from: string, what: 'COPY --from' | 'RUN --mount from'): void {
    let literal: boolean;
    try {
      literal = this.lex.processWord(from, new Map()) === from;
    } catch {
      literal = false;
    }
    if (!literal) {
      const [flag, verb] = what === 'COPY --from' ? ['--from', 'copy'] : ['from', 'mount'];
      throw errorAt(cmd.instr, this.ctx, `${what}=${from}: variable expansion is not supported for ${flag}; define a stage with FROM using a global ARG and ${verb} from that stage instead`);
    }
    let sources = this.fromSources.get(cmd);
    if (!sources) this.fromSources.set(cmd, (sources = new Map()));
    if (/^[-+]?\d+$/.test(from)) {
      const index = Number(from);
      const stage = this.stages[index];
      if (index < 0 || !stage) {
        throw errorAt(cmd.instr, this.ctx, `${what}=${from}: invalid stage index ${index} (stages are numbered 0 to ${this.stages.length - 1})`);
      }
      sources.set(from, this.stageSource(stage));
      return;
    }
    const stage = this.byName.get(from.toLowerCase());
    if (stage) {
      sources.set(from, this.stageSource(stage));
      return;
    }
    // As BuildKit: a name that is no stage is looked up among the named contexts before it is taken as an image.
    const named = this.namedContext(from);
    if (named) {
      sources.set(from, named.type === 'local' ? { kind: 'local', context: named } : { kind: 'image', ref: named.ref });
      return;
    }
    const hint = suggest(from, this.stageNames());
    if (hint && !/[/:@]/.test(from)) {
      // Almost certainly a misspelt stage: say so instead of trying to pull an image by that name.
      throw errorAt(
        cmd.instr,
        this.ctx,
        `${what}=${from}: no stage named "${from}" (did you mean "${hint}"?); a name that is not a stage is taken as an image, but this one looks like a misspelt stage name`,
      );
    }
    sources.set(from, { kind: 'image', ref: from, ...(hint ? { hint } : {}) });
  }

  private stageSource(stage: Stage): FromSource {
    return { kind: 'stage', index: stage.index, name: this.label(stage), state: () => stage.state };
  }

  /** The stages a stage needs before it can be compiled: its base and the stages it copies or mounts from. */
  private dependencies(stage: Stage): Array<{ stage: Stage; via?: Command }> {
    const deps: Array<{ stage: Stage; via?: Command }> = [];
    if (stage.base.kind === 'stage') deps.push({ stage: stage.base.stage });
    for (const cmd of [...(stage.triggers ?? []), ...stage.commands]) {
      for (const source of this.sourcesOf(cmd)) {
        if (source.kind === 'stage') deps.push({ stage: this.stages[source.index] as Stage, via: cmd });
      }
    }
    return deps;
  }

  /**
   * BuildKit's hasCircularDependency, over every stage (reachable or not), naming the COPY and RUN lines.
   * Walks with an explicit stack: a file can chain thousands of stages.
   */
  checkCycles(): void {
    const done = new Set<Stage>();
    const path: Array<{ stage: Stage; via?: Command }> = [];
    const onPath = new Map<Stage, number>();
    const cycleError = (stage: Stage, via: Command | undefined, at: number): DockerfileError => {
      const cycle = [...path.slice(at), { stage, via }];
      const names = cycle.map((p) => this.label(p.stage)).join(' -> ');
      const vias = cycle.flatMap((p) => (p.via ? [p.via] : []));
      const first = vias[0] ?? stage.from;
      const flags = [...new Set(vias.map((c) => (c.kind === 'RUN' ? 'RUN --mount' : 'COPY --from')))].join(' and ');
      return errorAt(
        first.instr,
        this.ctx,
        `circular dependency detected on stage: ${this.label(stage)} (${names}, through ${flags} on line${vias.length > 1 ? 's' : ''} ${vias.map((c) => c.instr.startLine).join(', ')})`,
      );
    };
    // Each frame: the stage on the path and its dependencies not yet visited.
    const frames: Array<{ deps: Array<{ stage: Stage; via?: Command }>; next: number }> = [];
    const enter = (stage: Stage, via?: Command): void => {
      const at = onPath.get(stage);
      if (at !== undefined) throw cycleError(stage, via, at);
      if (done.has(stage)) return;
      onPath.set(stage, path.length);
      path.push({ stage, via });
      frames.push({ deps: this.dependencies(stage), next: 0 });
    };
    for (const root of this.stages) {
      enter(root);
      while (frames.length > 0) {
        const frame = frames[frames.length - 1] as (typeof frames)[number];
        const dep = frame.deps[frame.next++];
        if (dep) {
          enter(dep.stage, dep.via);
          continue;
        }
        frames.pop();
        const { stage } = path.pop() as { stage: Stage };
        onPath.delete(stage);
        done.add(stage);
      }
    }
  }

  /** Stages in an order where every stage comes after those it depends on (no cycles by now). */
  dependencyOrder(stages: Stage[]): Stage[] {
    const order: Stage[] = [];
    const seen = new Set<Stage>();
    for (const root of stages) {
      if (seen.has(root)) continue;
      seen.add(root);
      const frames = [{ stage: root, deps: this.dependencies(root), next: 0 }];
      while (frames.length > 0) {
        const frame = frames[frames.length - 1] as (typeof frames)[number];
        const dep = frame.deps[frame.next++];
        if (!dep) {
          frames.pop();
          order.push(frame.stage);
        } else if (!seen.has(dep.stage)) {
          seen.add(dep.stage);
          frames.push({ stage: dep.stage, deps: this.dependencies(dep.stage), next: 0 });
        }
      }
    }
    return order;
  }

  /** The stages `target` needs (itself included), in file order. */
  reachableFrom(target: Stage): Stage[] {
    const seen = new Set<Stage>([target]);
    const todo = [target];
    for (let stage = todo.pop(); stage; stage = todo.pop()) {
      for (const dep of this.dependencies(stage)) {
        if (!seen.has(dep.stage)) {
          seen.add(dep.stage);
          todo.push(dep.stage);
        }
      }
    }
    return [...seen].sort((a, b) => a.index - b.index);
  }
}
