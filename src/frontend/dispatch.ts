// Compiling one stage: each instruction updates the stage's build state (filesystem vertex,
// environment, working dir, user) and its image config and history, the way BuildKit's
// dockerfile2llb dispatchers do. No I/O: base images arrive already resolved.
//
// Over 500 lines on purpose: it is one class, one handler per instruction, all sharing the stage
// state and the step, history and size bookkeeping. The state itself, step names, lints and the
// value parsers live beside it (stage-state.ts, step-names.ts, lint.ts, instruction-values.ts).

import {
  type CopyAction,
  type DefinitionBuilder,
  type Digest,
  type ExecMount,
  type ExecOp,
  type Op,
  type ScriptFile,
  redactCredentials,
} from '../definition/index.js';
import { DockerfileError, messageOf } from './errors.js';
import { goDuration, goList, goQuotedList } from './gofmt.js';
import { isValidSignal, parseChown, parsePortSpec } from './instruction-values.js';
import {
  errorAt,
  stringFlag,
  type ArgCommand,
  type CmdCommand,
  type Command,
  type CopyCommand,
  type EntrypointCommand,
  type ExposeCommand,
  type HealthcheckCommand,
  type KeyValue,
  type RunCommand,
  type VolumeCommand,
} from './instructions.js';
import type { Linter } from './lint.js';
import { cleanPath, hasTrailingSlash, isAbsPath, joinPath } from './paths.js';
import { CACHE_NAMESPACE_ARG, mountOrder, parseMount, toExecMount, type RunMount } from './mounts.js';
import { chompHeredoc, parseHeredocMarker, type Heredoc } from './parser.js';
import type { ShellLex } from './shell-lexer.js';
import { PROXY_ARGS, defaultShell, envKey, setKey, type ArgValue, type HistoryItem, type StageState } from './stage-state.js';
import { displayText, summarizeHeredoc, type StepCounter } from './step-names.js';
import type { Entitlement, LocalContext, RunSettings } from './compile.js';
import type { FromSource } from './stages.js';

/** What the dispatcher needs from the whole compilation. */
export interface DispatchContext {
  file: string;
  lines: readonly string[];
  builder: DefinitionBuilder;
  /** Expands words: Dockerfile escape character, quotes removed. */
  lex: ShellLex;
  /** ARGs before the first FROM (and the predefined platform ARGs), after --build-arg overrides. */
  globalArgs: ReadonlyMap<string, string>;
  buildArgs: Readonly<Record<string, string>>;
  /** Network of RUN steps that do not say (`RUN --network=default`). */
  defaultNetwork: 'none' | 'host';
  /** Entitlements the build grants. */
  allow: readonly Entitlement[];
  /** What every RUN step gets from the build's `--add-host`, `--ulimit` and `--shm-size`. */
  runSettings?: RunSettings;
  /** Fixed `created` time for new history entries (SOURCE_DATE_EPOCH), if any. */
  created?: string;
  contextDigest(): Digest;
  /** The source vertex of a named local build context. */
  localDigest(local: LocalContext): Digest;
  /** What a COPY --from or a RUN --mount from= of `cmd` names (`from` as written). */
  fromSource(cmd: Command, from: string): FromSource | undefined;
  /** Records the ARG names declared by dispatched stages (to warn about unused --build-arg). */
  declaredArgs: Set<string>;
  /** Where lints are reported. */
  lint: Linter;
  /** Characters of text the steps and history hold so far, shared by the stages of a compile. */
  size?: { used: number };
}

/**
 * Most text the steps of one build may carry (commands, paths, environments, history). Every RUN
 * holds the whole environment, so a few large ARGs and many steps would make gigabytes to hash.
 */
const MAX_STEPS_TEXT = 16 * 1024 * 1024;

/** Where a RUN heredoc with a `#!` line is written while its step runs. */
const HEREDOC_SCRIPT_DIR = '/.builder-heredoc';

const HISTORY_COMMENT = 'buildkit.dockerfile.v0';

/** RUN's history text: BuildKit puts the build args in scope first (`|2 A=1 B=2 make`). */
function runCommandString(args: readonly string[], buildArgs: readonly ArgValue[], env: ReadonlyMap<string, string>): string {
  const entries = new Map<string, string>();
  for (const arg of buildArgs) entries.set(arg.key, `${arg.key}=${env.get(arg.key) ?? arg.value ?? ''}`);
  const prefix = entries.size > 0 ? [`|${entries.size}`, ...entries.values()] : [];
  return [...prefix, ...args].join(' ');
}

/** Compiles the instructions of one stage on top of its base state. */
export class StageDispatcher {
  /** CMD set in this stage: then ENTRYPOINT keeps it (an inherited CMD is reset). */
  private cmdSet = false;
  private onbuild = false;
  /** The instruction being dispatched. */
  private current: Command | undefined;
  /** Positions of the keys of `state.config.Env` (the list it indexes). */
  private envIndex: { list: string[]; at: Map<string, number> } | undefined;

  constructor(
    private readonly ctx: DispatchContext,
    readonly state: StageState,
    private readonly steps: StepCounter,
  ) {}

  private stepName(text: string): string {
    return this.steps.name(text, this.onbuild);
  }

  dispatch(cmd: Command, isOnBuild = false): void {
    this.onbuild = isOnBuild;
    this.current = cmd;
    try {
      this.dispatchCommand(cmd);
    } catch (err) {
      if (err instanceof DockerfileError) throw err;
      throw this.error(cmd, messageOf(err), err);
    } finally {
      this.onbuild = false;
    }
  }

  private dispatchCommand(cmd: Command): void {
    switch (cmd.kind) {
      case 'ENV':
        return this.env(cmd, this.expandPairs(cmd, cmd.pairs));
      case 'LABEL':
        return this.labels(this.expandPairs(cmd, cmd.pairs));
      case 'ARG':
        return this.arg(cmd);
      case 'RUN':
        return this.run(cmd);
      case 'WORKDIR':
        return this.workdir(cmd, this.expand(cmd, cmd.path));
      case 'USER': {
        const user = this.expand(cmd, cmd.user);
        this.state.user = user;
        this.state.config.User = user;
        return this.commit(`USER ${user}`);
      }
      case 'COPY':
      case 'ADD':
        return this.copy(cmd);
      case 'CMD':
        return this.cmd(cmd);
      case 'ENTRYPOINT':
        return this.entrypoint(cmd);
      case 'EXPOSE':
        return this.expose(cmd);
      case 'VOLUME':
        return this.volume(cmd);
      case 'STOPSIGNAL': {
        const signal = this.expand(cmd, cmd.signal);
        if (!isValidSignal(signal)) throw this.error(cmd, `STOPSIGNAL: invalid signal: ${signal}`);
        this.state.config.StopSignal = signal;
        return this.commit(`STOPSIGNAL ${signal}`);
      }
      case 'SHELL':
        this.state.config.Shell = [...cmd.shell];
        return this.commit(`SHELL ${goList(cmd.shell)}`);
      case 'HEALTHCHECK':
        return this.healthcheck(cmd);
      case 'MAINTAINER':
        // Docker records MAINTAINER as the image's `author`, not as a label.
        this.state.author = cmd.maintainer;
        return this.commit(`MAINTAINER ${cmd.maintainer}`);
      case 'ONBUILD':
        // Stored for images built FROM this one; BuildKit writes no history entry for it.
        this.state.config.OnBuild = [...(this.state.config.OnBuild ?? []), cmd.expression];
        return;
      case 'FROM':
        throw this.error(cmd, 'FROM cannot be used here');
    }
  }

  error(cmd: Command, reason: string, cause?: unknown): DockerfileError {
    return errorAt(cmd.instr, this.ctx, reason, cause);
  }

  private expand(cmd: Command, word: string): string {
    let result;
    try {
      result = this.ctx.lex.process(word, this.state.env, false);
    } catch (err) {
      throw this.error(cmd, `${cmd.kind}: ${messageOf(err)}`, err);
    }
    this.ctx.lint.undefinedVars(cmd, word, result.unmatched, this.state);
    return result.result;
  }

  /** Every pair is expanded against the environment before the instruction: `ENV a=1 b=$a` sees the old `a`. */
  private expandPairs(cmd: Command, pairs: readonly KeyValue[]): KeyValue[] {
    return pairs.map((p) => ({ key: this.expand(cmd, p.key), value: this.expand(cmd, p.value) }));
  }

  private meta(cmd: Command, name: string) {
    return { name, file: this.ctx.file, startLine: cmd.instr.startLine, endLine: cmd.instr.endLine, position: this.steps.position() };
  }

  private charge(cmd: Command, chars: number): void {
    const size = this.ctx.size;
    if (!size) return;
    size.used += chars;
    if (size.used > MAX_STEPS_TEXT) {
      throw this.error(
        cmd,
        `${cmd.kind}: the build's steps would hold more than ${MAX_STEPS_TEXT / 1024 / 1024} MiB of commands, paths and environment (each RUN step carries the whole environment and each step its full paths, so large values multiply)`,
      );
    }
  }

  private commit(createdBy: string, vertex?: Digest): void {
    if (this.current) this.charge(this.current, createdBy.length);
    const entry: HistoryItem = { created_by: createdBy, comment: HISTORY_COMMENT };
    if (this.ctx.created) entry.created = this.ctx.created;
    if (vertex) entry.vertex = vertex;
    else entry.empty_layer = true;
    this.state.history.push(entry);
  }

  /** The shell of shell-form commands: SHELL's, else the platform's default. */
  shell(): string[] {
    const shell = this.state.config.Shell;
    return shell && shell.length > 0 ? [...shell] : defaultShell(this.state.platform.os);
  }

  private withShell(command: string): string[] {
    return [...this.shell(), command];
  }

  private env(cmd: Command, pairs: KeyValue[]): void {
    for (const { key } of pairs) this.ctx.lint.secretName(cmd, 'ENV', key);
    const env = (this.state.config.Env ??= []);
    if (this.envIndex?.list !== env) {
      const at = new Map<string, number>();
      env.forEach((e, i) => at.has(envKey(e)) || at.set(envKey(e), i));
      this.envIndex = { list: env, at };
    }
    const at = this.envIndex.at;
    for (const { key, value } of pairs) {
      this.state.env.set(key, value);
      // Replaced in place (the entry keeps its position), without scanning the list for every ENV line.
      const i = at.get(key);
      if (i === undefined) at.set(key, env.push(`${key}=${value}`) - 1);
      else env[i] = `${key}=${value}`;
    }
    this.commit(`ENV ${pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`);
  }

  // The stage's config is its own (copied from the base), so it is updated in place: a copy per
  // instruction made thousands of LABEL lines quadratic.
  private labels(pairs: KeyValue[]): void {
    const labels = (this.state.config.Labels ??= {});
    for (const { key, value } of pairs) setKey(labels, key, value);
    this.commit(`LABEL ${pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`);
  }

  /**
   * ARG scoping as in BuildKit: a --build-arg value wins over the default; `ARG NAME` without a
   * default picks up the global (pre-FROM) value; the value joins the environment of later steps.
   */
  private arg(cmd: ArgCommand): void {
    const parts: string[] = [];
    for (const decl of cmd.args) {
      this.ctx.lint.secretName(cmd, 'ARG', decl.key);
      const provided = Object.hasOwn(this.ctx.buildArgs, decl.key);
      let value: string | undefined;
      if (provided) value = this.ctx.buildArgs[decl.key];
      else if (decl.value !== undefined) value = this.expand(cmd, decl.value);
      else value = this.ctx.globalArgs.get(decl.key);
      if (value !== undefined) this.state.env.set(decl.key, value);
      this.state.buildArgs.push(value === undefined ? { key: decl.key } : { key: decl.key, value });
      this.ctx.declaredArgs.add(decl.key);
      parts.push(value === undefined ? decl.key : `${decl.key}=${value}`);
    }
    this.commit(`ARG ${parts.join(' ')}`);
  }

  private run(cmd: RunCommand): void {
    // Every flag is checked first, so a Dockerfile BuildKit rejects is rejected here for the
    // same reason, before anything says "not supported yet".
    const specs = (cmd.flags.get('mount') as string[] | undefined) ?? [];
    const parsed = specs.map((spec) => this.mountFlag(cmd, spec, () => parseMount(spec, (word) => this.expand(cmd, word))));
    const inputs: Digest[] = [this.state.root];
    const mounts = this.compileMounts(cmd, specs, parsed, inputs);
    const security = stringFlag(cmd, 'security');
    if (security !== undefined && security !== 'sandbox' && security !== 'insecure') {
      throw this.error(cmd, `RUN --security=${security}: unsupported security mode (use sandbox or insecure)`);
    }
    const networkFlag = stringFlag(cmd, 'network') ?? 'default';
    if (!['default', 'none', 'host'].includes(networkFlag)) {
      throw this.error(cmd, `RUN --network=${networkFlag}: unsupported network mode (use default, none or host)`);
    }
    // A Dockerfile may not widen the sandbox the person running the build chose (BuildKit's entitlements).
    if (networkFlag === 'host') this.requireEntitlement(cmd, 'network.host', 'RUN --network=host');
    if (security === 'insecure') this.requireEntitlement(cmd, 'security.insecure', 'RUN --security=insecure');
    if (cmd.flags.has('device')) throw this.error(cmd, 'RUN --device is not supported yet');
    let args = cmd.prependShell ? this.withShell(cmd.cmdLine.join(' ')) : [...cmd.cmdLine];
    let displaySuffix = '';
    const scripts: ScriptFile[] = [];
    if (cmd.files && cmd.files.length > 0) {
      if (!cmd.prependShell || cmd.cmdLine.length !== 1) throw this.error(cmd, 'RUN: a heredoc needs the shell form of RUN');
      const line = cmd.cmdLine[0] as string;
      const first = cmd.files[0] as Heredoc;
      if (cmd.files.length === 1 && parseHeredocMarker(line)) {
        // `RUN <<EOF`: the body is the script. With a `#!` line it is a file run as a program
        // (BuildKit mounts it at /dev/pipes/; here it exists only while the step runs).
        const data = first.chomp ? chompHeredoc(first.content) : first.content;
        if (this.state.platform.os !== 'windows' && data.startsWith('#!')) {
          const path = `${HEREDOC_SCRIPT_DIR}/${first.name}`;
          scripts.push({ path, data, mode: 0o755 });
          args = this.withShell(path);
        } else {
          args = this.withShell(data);
        }
        displaySuffix = ` (${summarizeHeredoc(data)})`;
      } else {
        // Anything else (`RUN cat <<EOF > file`, several heredocs): the shell reads the heredocs.
        let full = line;
        for (const file of cmd.files) full += `\n${file.content}${file.name}`;
        args = this.withShell(full);
      }
    }
    this.charge(
      cmd,
      args.reduce((n, a) => n + a.length, 0) + [...this.state.env].reduce((n, [k, v]) => n + k.length + v.length + 1, 0) + (mounts.length > 0 ? JSON.stringify(mounts).length : 0),
    );
    const env = [...this.state.env].map(([k, v]) => `${k}=${v}`);
    // As BuildKit: the first agent socket is the step's SSH_AUTH_SOCK unless the stage sets one.
    const ssh = mounts.find((m) => m.type === 'ssh');
    if (ssh && !this.state.env.has('SSH_AUTH_SOCK')) env.push(`SSH_AUTH_SOCK=${ssh.target}`);
    const op: ExecOp = {
      type: 'exec',
      args,
      env,
      cwd: this.state.workdir || '/',
      user: this.state.user,
      network: networkFlag === 'default' ? this.ctx.defaultNetwork : (networkFlag as 'none' | 'host'),
      ...(security === 'insecure' ? { security: 'insecure' as const } : {}),
      ...(scripts.length > 0 ? { scripts } : {}),
      ...(mounts.length > 0 ? { mounts } : {}),
      ...this.ctx.runSettings,
    };
    const proxyEnv = PROXY_ARGS.filter(
      (key) => Object.hasOwn(this.ctx.buildArgs, key) && !this.state.env.has(key) && !this.state.buildArgs.some((a) => a.key === key),
    ).map((key) => `${key}=${this.ctx.buildArgs[key] ?? ''}`);
    if (proxyEnv.length > 0) op.proxyEnv = proxyEnv;
    const digest = this.ctx.builder.add(op, inputs, this.meta(cmd, this.stepName(displayText(cmd, displaySuffix))));
    this.state.root = digest;
    this.commit(`RUN ${runCommandString(args, this.state.buildArgs, this.state.env)} # buildkit`, digest);
  }

  /** Runs `step` for one --mount, its errors naming the mount as written. */
  private mountFlag<T>(cmd: RunCommand, spec: string, step: () => T): T {
    try {
      return step();
    } catch (err) {
      if (err instanceof DockerfileError) throw err;
      throw this.error(cmd, `RUN --mount=${spec}: ${messageOf(err)}`, err);
    }
  }

  /**
   * The exec op's mounts. What a bind or seeded cache mount shows is a vertex input: each
   * distinct filesystem is added to `inputs` once, after input 0 (the root filesystem).
   */
  private compileMounts(cmd: RunCommand, specs: readonly string[], parsed: readonly RunMount[], inputs: Digest[]): ExecMount[] {
    const index = new Map<Digest, number>();
    let sshIndex = 0;
    const cacheNamespace = this.ctx.buildArgs[CACHE_NAMESPACE_ARG];
    const mounts = parsed.map((m, i) =>
      this.mountFlag(cmd, specs[i] as string, () =>
        toExecMount(m, {
          workdir: this.state.workdir || '/',
          sshIndex: m.type === 'ssh' ? sshIndex++ : sshIndex,
          ...(cacheNamespace ? { cacheNamespace } : {}),
          input: (from) => {
            const digest = from === undefined ? this.ctx.contextDigest() : this.fromDigest(cmd, from, m.target ?? '');
            let at = index.get(digest);
            if (at === undefined) {
              at = inputs.push(digest) - 1;
              index.set(digest, at);
            }
            return at;
          },
        }),
      ),
    );
    return mountOrder(mounts);
  }

  private requireEntitlement(cmd: RunCommand, entitlement: Entitlement, what: string): void {
    if (!this.ctx.allow.includes(entitlement)) {
      throw this.error(cmd, `${what} is not allowed: the build must grant the ${entitlement} entitlement (builder build --allow ${entitlement})`);
    }
  }

  private workdir(cmd: Command, path: string): void {
    const wd = cleanPath(isAbsPath(path) ? path : joinPath('/', this.state.config.WorkingDir ?? '', path));
    // `WORKDIR a` repeated makes ever longer paths, each held by its own step.
    this.charge(cmd, wd.length);
    this.state.config.WorkingDir = wd;
    this.state.workdir = wd;
    if (wd === '/') {
      this.commit(`WORKDIR ${wd}`);
      return;
    }
    const user = this.state.config.User;
    const op: Op = {
      type: 'file',
      actions: [{ action: 'mkdir', path: wd, mode: 0o755, ...(user ? { chown: parseChown(user) } : {}) }],
    };
    const digest = this.ctx.builder.add(op, [this.state.root], this.meta(cmd, this.stepName(displayText(cmd))));
    this.state.root = digest;
    // BuildKit commits WORKDIR with a layer but without the "# buildkit" marker.
    const entry: HistoryItem = { created_by: `WORKDIR ${wd}`, comment: HISTORY_COMMENT, vertex: digest };
    if (this.ctx.created) entry.created = this.ctx.created;
    this.state.history.push(entry);
  }

  /** COPY sources are relative to the source root; the destination is relative to WORKDIR. */
  private copy(cmd: CopyCommand): void {
    const isAdd = cmd.kind === 'ADD';
    const all = cmd.sources.map((s) => this.expand(cmd, s));
    const urls = isAdd ? all.filter((s) => /^https?:\/\//i.test(s)) : [];
    const sources = all.filter((s) => !urls.includes(s));
    if (isAdd) {
      const git = sources.find((s) => /^git@|^git:\/\/|^ssh:\/\//.test(s));
      if (git) throw this.error(cmd, `ADD ${git}: adding a Git repository is not supported yet; clone it in a RUN step or a separate stage`);
    }
    const destRaw = this.expand(cmd, cmd.dest);
    const destIsDir = hasTrailingSlash(destRaw) || destRaw === '';
    if (all.length + cmd.contents.length > 1 && !destIsDir) {
      throw this.error(cmd, `${cmd.kind} with more than one source needs a directory destination ending in "/" (got "${destRaw}")`);
    }
    const checksumRaw = stringFlag(cmd, 'checksum');
    const checksum = checksumRaw ? this.expand(cmd, checksumRaw) : '';
    if (checksum) {
      if (!/^sha256:[0-9a-f]{64}$/.test(checksum)) throw this.error(cmd, `ADD --checksum=${checksum}: expected sha256:<64 hex digits>`);
      if (urls.length !== 1 || sources.length > 0 || cmd.contents.length > 0) {
        throw this.error(cmd, 'ADD --checksum can only be used with a single HTTP(S) source (checksums of local files are computed by the build)');
      }
    }
    const unpackFlag = cmd.flags.get('unpack');
    const excludes = ((cmd.flags.get('exclude') as string[] | undefined) ?? []).map((x) => this.expand(cmd, x));
    if (excludes.some((x) => x === '')) throw this.error(cmd, `${cmd.kind} --exclude needs a pattern`);
    const parents = cmd.flags.get('parents') === true;
    const destAbs = isAbsPath(destRaw) ? cleanPath(destRaw) : joinPath('/', this.state.workdir || '/', destRaw);
    const dest = destIsDir && destAbs !== '/' ? `${destAbs}/` : destAbs;
    this.charge(cmd, dest.length + all.reduce((n, src) => n + src.length, 0));

    const chownRaw = stringFlag(cmd, 'chown');
    const chown = chownRaw ? this.expand(cmd, chownRaw) : '';
    const chmodRaw = stringFlag(cmd, 'chmod');
    const chmod = chmodRaw ? this.expand(cmd, chmodRaw) : '';
    const options = {
      dest,
      ...(chown ? { chown: parseChown(chown) } : {}),
      ...(chmod ? { chmod: this.parseChmod(cmd, chmod) } : {}),
    };
    const inputs: Digest[] = [this.state.root];
    const actions: CopyAction[] = [];
    if (sources.length > 0) {
      inputs.push(cmd.from === undefined ? this.ctx.contextDigest() : this.fromDigest(cmd, cmd.from));
      actions.push({
        action: 'copy',
        sourceInput: 1,
        src: sources.map((s) => cleanPath(joinPath('/', s)).replace(/^\/+/, '') || '.'),
        ...options,
        // ADD extracts local archives unless --unpack=false.
        ...(isAdd && unpackFlag !== false ? { unpack: true } : {}),
        ...(excludes.length > 0 ? { exclude: excludes } : {}),
        ...(parents ? { parents: true } : {}),
      });
    }
    // ADD <url>: a download vertex, copied like a one-file filesystem (extracted with --unpack).
    for (const url of urls) {
      let base: string;
      try {
        base = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
      } catch {
        // As BuildKit's url.Parse: a malformed URL or %-escape is an error.
        throw this.error(cmd, `${cmd.kind} ${url}: not a valid URL`);
      }
      const filename = (base || '__unnamed__').replace(/[/\\]/g, '_');
      const http = this.ctx.builder.add({ type: 'http', url, filename, ...(checksum ? { checksum: checksum as Digest } : {}) }, [], {
        name: `[internal] download ${redactCredentials(url)}`,
      });
      inputs.push(http);
      actions.push({
        action: 'copy',
        sourceInput: inputs.length - 1,
        src: [filename],
        ...options,
        ...(unpackFlag === true ? { unpack: true } : {}),
      });
    }
    // Each heredoc becomes a one-file filesystem (BuildKit: llb.Scratch().File(llb.Mkfile(…)))
    // copied like any other source, so --chown, --chmod and the destination rules apply.
    for (const content of cmd.contents) {
      const data = content.expand ? this.expandHeredoc(cmd, content.data) : content.data;
      const path = cleanPath(joinPath('/', content.name));
      const scratch = this.ctx.builder.add({ type: 'scratch' }, [], { name: 'FROM scratch', hidden: true });
      const file = this.ctx.builder.add({ type: 'file', actions: [{ action: 'mkfile', path, data, mode: 0o644 }] }, [scratch], {
        name: `preparing inline document <<${content.name}`,
        hidden: true,
      });
      inputs.push(file);
      actions.push({ action: 'copy', sourceInput: inputs.length - 1, src: [path.replace(/^\/+/, '')], ...options });
    }

    const name = this.stepName(displayText(cmd));
    const digest = this.ctx.builder.add({ type: 'file', actions }, inputs, this.meta(cmd, name));
    this.state.root = digest;
    const flags = [...(chown ? [`--chown=${chown}`] : []), ...(chmod ? [`--chmod=${chmod}`] : [])];
    const docs = cmd.contents.map((c) => `<<${c.name}`);
    const shown = all.map((s) => (urls.includes(s) ? redactCredentials(s) : s));
    this.commit(`${cmd.kind} ${[...flags, ...shown, ...docs, destRaw].join(' ')} # buildkit`, digest);
  }

  /** Heredoc bodies expand variables but keep quotes (BuildKit's ExpandRaw with SkipProcessQuotes). */
  private expandHeredoc(cmd: Command, data: string): string {
    try {
      return this.ctx.lex.with({ skipProcessQuotes: true }).processWord(data, this.state.env);
    } catch (err) {
      throw this.error(cmd, `${cmd.kind}: ${messageOf(err)}`, err);
    }
  }

  private parseChmod(cmd: Command, chmod: string): number {
    if (/^[0-7]+$/.test(chmod)) {
      const mode = parseInt(chmod, 8);
      if (mode <= 0o7777) return mode;
    }
    if (/^\d+$/.test(chmod)) throw this.error(cmd, `invalid chmod parameter: '${chmod}'. it should be octal string and between 0 and 07777`);
    throw this.error(cmd, `COPY --chmod=${chmod}: symbolic modes are not supported yet; use an octal mode such as 0755`);
  }

  /** The filesystem `from` names (a stage, else an image), for COPY --from or, given its target, RUN --mount. */
  private fromDigest(cmd: Command, from: string, mountTarget?: string): Digest {
    const what = mountTarget === undefined ? `COPY --from=${from}` : `RUN --mount from=${from}`;
    const source = this.ctx.fromSource(cmd, from);
    if (!source) throw new Error(`internal error: ${what} was not resolved before compiling`);
    if (source.kind === 'stage') {
      const state = source.state();
      if (state) return state.root;
      throw this.error(
        cmd,
        mountTarget === undefined
          ? `${what}: stage "${source.name}" must be defined before the stage that copies from it`
          : `cannot mount from stage "${from}" to "${mountTarget}", stage needs to be defined before current command`,
      );
    }
    if (source.kind === 'local') return this.ctx.localDigest(source.context);
    if (source.resolved) {
      return this.ctx.builder.add({ type: 'image', ref: source.resolved.ref, platform: source.resolved.platform }, [], {
        name: `[internal] load image ${source.resolved.ref}`,
      });
    }
    const hint = source.hint ? ` (did you mean the stage "${source.hint}"?)` : '';
    throw this.error(
      cmd,
      `${what}: there is no stage named "${source.ref}"${hint}, so it was taken as an image, which could not be resolved: ${source.error ? messageOf(source.error) : 'unknown error'}`,
      source.error,
    );
  }

  private cmd(cmd: CmdCommand): void {
    const args = cmd.prependShell ? this.withShell(cmd.cmdLine.join(' ')) : [...cmd.cmdLine];
    this.state.config.Cmd = args;
    this.state.config.ArgsEscaped = true;
    this.cmdSet = true;
    this.commit(`CMD ${goQuotedList(args)}`);
  }

  private entrypoint(cmd: EntrypointCommand): void {
    const args = cmd.cmdLine === null ? null : cmd.prependShell ? this.withShell(cmd.cmdLine.join(' ')) : [...cmd.cmdLine];
    if (args === null) delete this.state.config.Entrypoint;
    else this.state.config.Entrypoint = args;
    // An ENTRYPOINT resets the CMD inherited from the base, but not one set in this stage.
    if (!this.cmdSet) delete this.state.config.Cmd;
    this.commit(`ENTRYPOINT ${goQuotedList(args ?? [])}`);
  }

  private expose(cmd: ExposeCommand): void {
    const ports: string[] = [];
    for (const raw of cmd.ports) {
      let words: string[];
      try {
        words = this.ctx.lex.processWords(raw, this.state.env);
      } catch (err) {
        throw this.error(cmd, `EXPOSE: ${messageOf(err)}`, err);
      }
      for (const word of words) {
        try {
          ports.push(...parsePortSpec(word));
        } catch (err) {
          throw this.error(cmd, `EXPOSE: ${messageOf(err)}`, err);
        }
      }
    }
    const exposed = (this.state.config.ExposedPorts ??= {});
    for (const p of ports) setKey(exposed, p, {});
    this.commit(`EXPOSE ${goList(ports)}`);
  }

  private volume(cmd: VolumeCommand): void {
    const volumes = cmd.volumes.map((v) => this.expand(cmd, v));
    if (volumes.some((v) => v === '')) throw this.error(cmd, 'VOLUME specified can not be an empty string');
    const all = (this.state.config.Volumes ??= {});
    for (const v of volumes) setKey(all, v, {});
    this.commit(`VOLUME ${goList(volumes)}`);
  }

  private healthcheck(cmd: HealthcheckCommand): void {
    const h = cmd.health;
    this.state.config.Healthcheck = structuredClone(h);
    const d = (ns: number | undefined) => goDuration(ns ?? 0);
    this.commit(
      `HEALTHCHECK {Test:${goList(h.Test ?? [])} Interval:${d(h.Interval)} Timeout:${d(h.Timeout)} ` +
        `StartPeriod:${d(h.StartPeriod)} StartInterval:${d(h.StartInterval)} Retries:${h.Retries ?? 0}}`,
    );
  }
}
