// Dockerfile → Definition. Mirrors BuildKit's dockerfile2llb: check every instruction, evaluate
// the global ARGs, work out each stage's base, keep only the stages the target needs, resolve
// their base images (through the injected resolver: the frontend itself does no I/O), then
// compile the stages in order into one deduplicated DAG plus the target's image config.

import { DefinitionBuilder, type Definition, type Digest, type ExecOp, type ImageSpec, type Platform } from '../definition/index.js';
import type { ImageConfigFile } from '../oci/types.js';
import { StageDispatcher, type DispatchContext } from './dispatch.js';
import { DockerfileError, messageOf } from './errors.js';
import { decodeInstruction, errorAt, type Command, type DecodeContext } from './instructions.js';
import { Linter, type CompileWarning } from './lint.js';
import { parseInstructionLine, type Dockerfile } from './parser.js';
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformOf, toPlatform } from '../oci/platform.js';
import { ExpansionBudget, ShellLex } from './shell-lexer.js';
import { PROXY_ARGS, imageState, scratchState, stageStateFrom, type StageState } from './stage-state.js';
import { CACHE_NAMESPACE_ARG } from './mounts.js';
import { StageGraph, type FromSource, type Stage } from './stages.js';
import { StepCounter } from './step-names.js';
import { suggest } from './suggest.js';

export interface ResolvedImage {
  /** Canonical, pinned reference: `docker.io/library/alpine:3.19@sha256:…`. */
  ref: string;
  config: ImageConfigFile;
}

export type ImageResolver = (ref: string, platform: Platform) => Promise<ResolvedImage>;

export interface CompileOptions {
  /** The Dockerfile's name, for errors and vertex metadata. */
  file: string;
  buildArgs: Record<string, string>;
  /** Labels set on the final image over the Dockerfile's, without a history entry (`docker build --label`). */
  labels?: Record<string, string>;
  /** Stage to build; the last stage by default. */
  target?: string;
  /**
   * Target platform (TARGETPLATFORM), as asked for with `--platform`. Without it the build
   * platform is the target and, as in BuildKit, the image declares its base image's platform.
   */
  platform?: Platform;
  /** Platform of the build itself (BUILDPLATFORM); default: `platform` if given, else this machine's. */
  buildPlatform?: Platform;
  /** Resolves a base image to a pinned reference and its config (BuildKit's metaresolver). */
  resolveImage: ImageResolver;
  /** `.dockerignore` patterns, already parsed. */
  dockerignore: string[];
  /** Name of the build context's local source; default `context`. */
  contextName?: string;
  /**
   * Seconds since the epoch for `created` in new history entries (SOURCE_DATE_EPOCH). Without it
   * (and without a SOURCE_DATE_EPOCH build arg) `created` is left for the exporter to fill.
   */
  sourceDateEpoch?: number;
  /** Network of RUN steps without `--network` (`docker build --network`); default `host`. */
  defaultNetwork?: 'none' | 'host';
  /** What RUN steps may ask for beyond the sandbox (BuildKit's `--allow`); none by default. */
  allow?: readonly Entitlement[];
  /** Given to every RUN step; a setting left out leaves the steps' digests as they were. */
  runSettings?: RunSettings;
  /**
   * The named build context for a name (`--build-context NAME=…`), if there is one: a stage of
   * that name is replaced by it, and a FROM, COPY --from or RUN --mount from= naming it (and no
   * stage) reads it instead of an image. Names arrive as written (a caller normalises image names).
   */
  namedContext?: (name: string) => NamedContext | undefined;
}

/** What a named build context stands for: a local directory (a local source) or an image. */
export type NamedContext = ({ type: 'local' } & LocalContext) | { type: 'image'; ref: string };

/** A local source other than the build context: its name (where the solver finds it) and its `.dockerignore` patterns. */
export interface LocalContext {
  name: string;
  exclude: string[];
}

/** The build's settings for every RUN step (`--add-host`, `--ulimit`, `--shm-size`), as in ExecOp. */
export type RunSettings = Pick<ExecOp, 'extraHosts' | 'ulimits' | 'shmSize'>;

/** A privilege a Dockerfile can only use when the build grants it: RUN --network=host, RUN --security=insecure. */
export type Entitlement = 'network.host' | 'security.insecure';

export interface StageInfo {
  name?: string;
  index: number;
  /** `scratch`, the pinned image reference, or the name of the stage it builds on. */
  base: string;
  root: Digest;
}

export interface CompileResult {
  definition: Definition;
  /** The target stage's final vertex. */
  root: Digest;
  image: ImageSpec;
  /** The stages compiled into the Definition (those the target needs), in file order. */
  stages: StageInfo[];
  warnings: CompileWarning[];
}

/** Steps that are numbered in progress names (BuildKit's cmdTotal). */
const NUMBERED = new Set<Command['kind']>(['ADD', 'COPY', 'RUN', 'WORKDIR']);
const PLATFORM_ARGS = [
  'BUILDPLATFORM', 'BUILDOS', 'BUILDOSVERSION', 'BUILDARCH', 'BUILDVARIANT',
  'TARGETPLATFORM', 'TARGETOS', 'TARGETOSVERSION', 'TARGETARCH', 'TARGETVARIANT', 'TARGETSTAGE',
];
/** Build args that mean something without an ARG instruction. */
const BUILTIN_ARGS = new Set([...PLATFORM_ARGS, ...PROXY_ARGS, 'SOURCE_DATE_EPOCH', CACHE_NAMESPACE_ARG]);

/** RFC 3339 as BuildKit writes a time of whole seconds (Go's encoding: no fraction). */
export function rfc3339(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** The SOURCE_DATE_EPOCH build arg, when it is Unix seconds: it means what the option means (buildx passes the environment's as one). */
export function sourceDateEpochArg(buildArgs: Readonly<Record<string, string>>): number | undefined {
  const value = buildArgs.SOURCE_DATE_EPOCH;
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** `created` for new history entries: from SOURCE_DATE_EPOCH (option or build arg), else none. */
function createdTime(opts: CompileOptions): string | undefined {
  const epoch = opts.sourceDateEpoch ?? sourceDateEpochArg(opts.buildArgs);
  return epoch === undefined ? undefined : rfc3339(epoch);
}

class Compiler {
  private readonly builder = new DefinitionBuilder();
  private readonly lint: Linter;
  private readonly stepsText = { used: 0 };
  /** How many stages still to compile start FROM each stage (the target: always kept). */
  private readonly baseUses = new Map<Stage, number>();
  private readonly decodeCtx: DecodeContext;
  private readonly lex: ShellLex;
  private readonly graph: StageGraph;
  private readonly globalArgs = new Map<string, string>();
  private readonly declaredArgs = new Set<string>();
  private readonly imageCache = new Map<string, Promise<ResolvedImage>>();
  private context: Digest | undefined;
  private readonly createdAt: string | undefined;
  private readonly targetPlatform: Platform;
  private readonly buildPlatform: Platform;

  constructor(
    df: Dockerfile,
    private readonly opts: CompileOptions,
  ) {
    const escape = df.escape ?? (df.directives.escape === '`' ? '`' : '\\');
    this.decodeCtx = { file: opts.file, escape, lines: df.lines ?? [] };
    this.lex = new ShellLex(escape, { budget: new ExpansionBudget() });
    this.createdAt = createdTime(opts);
    this.lint = new Linter(opts.file, df.directives.check);
    this.buildPlatform = toPlatform(opts.buildPlatform ?? opts.platform ?? hostPlatform());
    this.targetPlatform = opts.platform ? toPlatform(opts.platform) : this.buildPlatform;
    for (const w of df.warnings ?? []) this.lint.warn(w.line, w.message, w.rule);
    this.graph = new StageGraph(df.instructions, this.decodeCtx, this.lex, this.lint, (name) => opts.namedContext?.(name));
  }

  async run(): Promise<CompileResult> {
    const target = this.graph.target(this.opts.target);
    this.evaluateGlobalArgs(target);
    for (const stage of this.graph.stages) this.resolveBase(stage);
    for (const stage of this.graph.stages) {
      for (const cmd of stage.commands) this.graph.resolveFromSources(cmd);
    }
    this.graph.checkCycles();
    const reachable = await this.resolveReachable(target);
    // Dependencies first: COPY --from and RUN --mount may name a stage defined later in the file (as in BuildKit).
    for (const stage of reachable) if (stage.base.kind === 'stage') this.baseUses.set(stage.base.stage, (this.baseUses.get(stage.base.stage) ?? 0) + 1);
    this.baseUses.set(target, Infinity);
    for (const stage of this.graph.dependencyOrder(reachable)) this.compileStage(stage);
    return this.result(target, reachable);
  }

  // ---- global ARGs and stage bases --------------------------------------------------------------

  /** The predefined platform ARGs, then the ARGs before the first FROM, with --build-arg overrides. */
  private evaluateGlobalArgs(target: Stage): void {
    const build = this.buildPlatform;
    const tp = this.targetPlatform;
    const defaults: Array<[string, string]> = [
      ['BUILDPLATFORM', formatPlatform(build)],
      ['BUILDOS', build.os],
      ['BUILDOSVERSION', build['os.version'] ?? ''],
      ['BUILDARCH', build.architecture],
      ['BUILDVARIANT', build.variant ?? ''],
      ['TARGETPLATFORM', formatPlatform(tp)],
      ['TARGETOS', tp.os],
      ['TARGETOSVERSION', tp['os.version'] ?? ''],
      ['TARGETARCH', tp.architecture],
      ['TARGETVARIANT', tp.variant ?? ''],
      ['TARGETSTAGE', target.name ?? ''],
    ];
    for (const [key, value] of defaults) {
      this.globalArgs.set(key, Object.hasOwn(this.opts.buildArgs, key) ? (this.opts.buildArgs[key] as string) : value);
    }
    for (const cmd of this.graph.metaArgs) {
      for (const decl of cmd.args) {
        this.declaredArgs.add(decl.key);
        let value: string | undefined;
        if (Object.hasOwn(this.opts.buildArgs, decl.key)) value = this.opts.buildArgs[decl.key];
        else if (decl.value !== undefined) value = this.expandGlobal(cmd, decl.value);
        if (value !== undefined) this.globalArgs.set(decl.key, value);
      }
    }
  }

  private expandGlobal(cmd: Command, word: string): string {
    try {
      return this.lex.processWord(word, this.globalArgs);
    } catch (err) {
      throw errorAt(cmd.instr, this.decodeCtx, `${cmd.kind}: ${messageOf(err)}`, err);
    }
  }

  /** FROM names and --platform values see only the global ARGs. */
  private resolveBase(stage: Stage): void {
    const from = stage.from;
    const baseName = this.expandGlobal(from, from.baseName);
    if (baseName === '') {
      throw errorAt(from.instr, this.decodeCtx, `FROM ${from.baseName}: the base name is empty after expansion (ARGs used in FROM must be declared before the first FROM and have a value)`);
    }
    stage.baseName = baseName;
    // A named context of the stage's own name replaces the stage, its instructions unused (BuildKit).
    const replacement = stage.name !== undefined ? this.opts.namedContext?.(stage.name) : undefined;
    if (replacement) {
      stage.commands = [];
      stage.triggers = [];
    }
    if (from.platform !== undefined) {
      const spec = this.expandGlobal(from, from.platform);
      if (spec === '') throw errorAt(from.instr, this.decodeCtx, `FROM --platform=${from.platform}: empty platform value`);
      try {
        stage.platform = parsePlatform(spec, this.buildPlatform);
      } catch (err) {
        throw errorAt(from.instr, this.decodeCtx, `FROM --platform=${from.platform}: ${messageOf(err)}`, err);
      }
    }
    const lower = baseName.toLowerCase();
    const named = this.graph.named(lower);
    const earlier = named && named.index < stage.index ? named : undefined;
    const context = replacement ?? (earlier || lower === 'scratch' ? undefined : this.opts.namedContext?.(baseName));
    if (context) stage.base = context.type === 'local' ? { kind: 'local', context } : { kind: 'image', ref: context.ref };
    else if (earlier) stage.base = { kind: 'stage', stage: earlier };
    else if (lower === 'scratch') stage.base = { kind: 'scratch' };
    else {
      stage.base = { kind: 'image', ref: baseName };
      this.lint.baseImageName(from.instr.startLine, baseName);
    }
  }

  // ---- what the target needs --------------------------------------------------------------

  /**
   * Resolves the base images of the needed stages, then adds their ONBUILD triggers; a trigger
   * may copy from another stage, which can make more stages (and images) needed: repeat.
   */
  private async resolveReachable(target: Stage): Promise<Stage[]> {
    for (;;) {
      const reachable = this.graph.reachableFrom(target);
      await Promise.all(reachable.map((s) => this.resolveImage(s)));
      await Promise.all(reachable.flatMap((s) => [...(s.triggers ?? []), ...s.commands].flatMap((c) => [...this.graph.sourcesOf(c)].map((source) => this.resolveFromImage(s, source)))));
      let grew = false;
      for (const stage of reachable) {
        if (stage.triggers) continue;
        stage.triggers = this.loadTriggers(stage);
        for (const trigger of stage.triggers) {
          this.graph.resolveFromSources(trigger);
          if ([...this.graph.sourcesOf(trigger)].some((source) => source.kind === 'stage')) grew = true;
        }
      }
      if (!grew) return reachable;
    }
  }

  /** COPY --from=<image>, RUN --mount=from=<image>: resolved like a base image (pinned), for the stage's platform. */
  private async resolveFromImage(stage: Stage, source: FromSource): Promise<void> {
    if (source.kind !== 'image' || source.resolved || source.error) return;
    const platform = this.stagePlatform(stage);
    try {
      const resolved = await this.resolveOnce(source.ref, platform);
      source.resolved = { ref: resolved.ref, platform };
    } catch (err) {
      source.error = err;
    }
  }

  /** Each image is resolved once per platform, whether a FROM or a COPY --from names it. */
  private resolveOnce(ref: string, platform: Platform): Promise<ResolvedImage> {
    const key = `${ref}\u0000${formatPlatform(platform)}`;
    let pending = this.imageCache.get(key);
    if (!pending) {
      pending = this.opts.resolveImage(ref, platform);
      this.imageCache.set(key, pending);
    }
    return pending;
  }

  private stagePlatform(stage: Stage): Platform {
    return stage.platform ?? this.targetPlatform;
  }

  private async resolveImage(stage: Stage): Promise<void> {
    if (stage.base.kind !== 'image' || stage.resolved) return;
    const ref = stage.base.ref;
    const platform = this.stagePlatform(stage);
    const pending = this.resolveOnce(ref, platform);
    let resolved: ResolvedImage;
    try {
      resolved = await pending;
    } catch (err) {
      const earlier = this.graph.stages.filter((s) => s.index < stage.index).flatMap((s) => (s.name ? [s.name] : []));
      const hint = suggest(ref, earlier);
      const extra = hint ? ` (did you mean the stage "${hint}"?)` : '';
      throw errorAt(stage.from.instr, this.decodeCtx, `FROM ${ref}: ${messageOf(err)}${extra}`, err);
    }
    if (!/@sha256:[0-9a-f]{64}$/.test(resolved.ref)) {
      throw new Error(`resolveImage(${JSON.stringify(ref)}) returned ${JSON.stringify(resolved.ref)}, which is not pinned by digest`);
    }
    this.lint.baseImagePlatform(stage.from.instr.startLine, ref, resolved.config, platform);
    stage.resolved = resolved;
  }

  /** ONBUILD triggers: from the base image's config, or the base stage's ONBUILD instructions. */
  private loadTriggers(stage: Stage): Command[] {
    let expressions: string[] = [];
    if (stage.base.kind === 'stage') {
      expressions = stage.base.stage.commands.flatMap((c) => (c.kind === 'ONBUILD' ? [c.expression] : []));
    } else if (stage.base.kind === 'image') {
      expressions = stage.resolved?.config.config?.OnBuild ?? [];
    }
    const { startLine, endLine } = stage.from.instr;
    const source = this.decodeCtx.lines.slice(startLine - 1, endLine);
    return expressions.flatMap((expression) => {
      try {
        const instr = parseInstructionLine(expression, '\\', { file: this.opts.file, startLine, endLine, source });
        if (!instr) return [];
        if (['ONBUILD', 'FROM', 'MAINTAINER'].includes(instr.keyword)) throw new Error(`${instr.keyword} isn't allowed as an ONBUILD trigger`);
        return [decodeInstruction(instr, this.decodeCtx)];
      } catch (err) {
        const reason = err instanceof DockerfileError ? err.reason : messageOf(err);
        throw errorAt(stage.from.instr, this.decodeCtx, `ONBUILD trigger "${expression}" of the base: ${reason}`, err);
      }
    });
  }

  // ---- compiling ------------------------------------------------------------------------------

  private dispatchContext(): DispatchContext {
    return {
      file: this.opts.file,
      lines: this.decodeCtx.lines,
      builder: this.builder,
      lex: this.lex,
      globalArgs: this.globalArgs,
      buildArgs: this.opts.buildArgs,
      defaultNetwork: this.opts.defaultNetwork ?? 'host',
      allow: this.opts.allow ?? [],
      ...(this.opts.runSettings ? { runSettings: this.opts.runSettings } : {}),
      ...(this.createdAt !== undefined ? { created: this.createdAt } : {}),
      contextDigest: () => this.contextDigest(),
      localDigest: (local: LocalContext) => this.localDigest(local),
      fromSource: (cmd: Command, from: string) => this.graph.fromSource(cmd, from),
      declaredArgs: this.declaredArgs,
      lint: this.lint,
      size: this.stepsText,
    };
  }

  /** The build context is a single source vertex, added when first used. */
  private contextDigest(): Digest {
    this.context ??= this.localDigest({ name: this.opts.contextName ?? 'context', exclude: this.opts.dockerignore });
    return this.context;
  }

  /** A local source: the build context or a named one. */
  private localDigest(local: LocalContext): Digest {
    const name = local.name === (this.opts.contextName ?? 'context') ? '[internal] load build context' : `[internal] load build context ${local.name}`;
    return this.builder.add({ type: 'local', name: local.name, exclude: [...local.exclude] }, [], { name, hidden: true });
  }

  private compileStage(stage: Stage): void {
    const ctx = this.dispatchContext();
    const triggers = stage.triggers ?? [];
    const total =
      (stage.base.kind === 'image' || stage.base.kind === 'local' ? 1 : 0) + triggers.length + stage.commands.filter((c) => NUMBERED.has(c.kind)).length;
    const steps = new StepCounter({ display: this.graph.stages.length === 1 ? '' : this.graph.label(stage), total });
    const { startLine, endLine } = stage.from.instr;
    const platform = this.stagePlatform(stage);

    let state: StageState;
    switch (stage.base.kind) {
      case 'scratch': {
        const root = this.builder.add({ type: 'scratch' }, [], { name: 'FROM scratch', hidden: true });
        state = scratchState(root, platform);
        stage.imagePlatform = this.targetPlatform;
        break;
      }
      case 'image': {
        const resolved = stage.resolved as ResolvedImage;
        const root = this.builder.add({ type: 'image', ref: resolved.ref, platform }, [], {
          name: steps.name(`FROM ${resolved.ref}`),
          position: steps.position(),
          file: this.opts.file,
          startLine,
          endLine,
        });
        state = imageState(root, platform, resolved.config);
        stage.imagePlatform = resolved.config.os && resolved.config.architecture ? platformOf(resolved.config) : platform;
        break;
      }
      case 'local': {
        // A directory as a base: its files copied onto an empty filesystem, as COPY . / would; an empty config.
        const scratch = this.builder.add({ type: 'scratch' }, [], { name: 'FROM scratch', hidden: true });
        const files = this.localDigest(stage.base.context);
        const root = this.builder.add({ type: 'file', actions: [{ action: 'copy', sourceInput: 1, src: ['.'], dest: '/' }] }, [scratch, files], {
          name: steps.name(`FROM ${stage.base.context.name}`),
          position: steps.position(),
          file: this.opts.file,
          startLine,
          endLine,
        });
        state = scratchState(root, platform);
        stage.imagePlatform = this.targetPlatform;
        break;
      }
      case 'stage': {
        const base = stage.base.stage.state;
        if (!base) throw new Error(`internal error: stage ${stage.base.stage.index} compiled after its dependant`);
        // The last stage built on a base takes its history instead of copying it: a chain of
        // stages would otherwise keep a copy per stage (quadratic).
        const uses = (this.baseUses.get(stage.base.stage) ?? 1) - 1;
        this.baseUses.set(stage.base.stage, uses);
        state = stageStateFrom(base);
        stage.imagePlatform = stage.base.stage.imagePlatform;
        if (uses === 0) base.history = [];
        break;
      }
    }
    const dispatcher = new StageDispatcher(ctx, state, steps);
    for (const trigger of triggers) dispatcher.dispatch(trigger, true);
    for (const cmd of stage.commands) dispatcher.dispatch(cmd);
    this.lint.stage(stage.commands, dispatcher.shell());
    stage.state = state;
  }

  private describeBase(stage: Stage): string {
    switch (stage.base.kind) {
      case 'scratch':
        return 'scratch';
      case 'stage':
        return this.graph.label(stage.base.stage);
      case 'image':
        return stage.resolved?.ref ?? stage.base.ref;
      case 'local':
        return stage.base.context.name;
    }
  }

  /**
   * The platform the image declares, as BuildKit sets it: the base image's, unless a platform
   * was asked for; then its os and architecture, and its variant when it has one or the base is
   * of another architecture.
   */
  private imagePlatform(target: Stage): Platform {
    const base = target.imagePlatform ?? this.targetPlatform;
    if (!this.opts.platform) return base;
    const tp = this.targetPlatform;
    const sameOsArch = tp.os === base.os && tp.architecture === base.architecture;
    const variant = tp.variant || !sameOsArch ? tp.variant : base.variant;
    return normalizePlatform({ os: tp.os, architecture: tp.architecture, ...(variant ? { variant } : {}) });
  }

  private result(target: Stage, reachable: Stage[]): CompileResult {
    const final = target.state as StageState;
    for (const key of Object.keys(this.opts.buildArgs)) {
      if (!this.declaredArgs.has(key) && !BUILTIN_ARGS.has(key)) {
        this.lint.warn(0, `build arg "${key}" was not consumed: no ARG ${key} in the stages built`);
      }
    }
    this.lint.enforce(this.decodeCtx.lines);
    if (this.opts.labels && Object.keys(this.opts.labels).length > 0) {
      final.config.Labels = { ...final.config.Labels, ...this.opts.labels };
    }
    return {
      definition: this.builder.build(),
      root: final.root,
      image: { config: final.config, platform: this.imagePlatform(target), ...(final.author !== undefined ? { author: final.author } : {}), history: final.history },
      stages: reachable.map((s) => ({
        ...(s.name !== undefined ? { name: s.name } : {}),
        index: s.index,
        base: this.describeBase(s),
        root: (s.state as StageState).root,
      })),
      warnings: this.lint.warnings,
    };
  }
}

/** Compiles a parsed Dockerfile into a Definition and the target's image spec. */
export async function compile(dockerfile: Dockerfile, opts: CompileOptions): Promise<CompileResult> {
  return new Compiler(dockerfile, opts).run();
}
