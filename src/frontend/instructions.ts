// Parsed instructions → typed commands (BuildKit's instructions package). This is where each
// instruction's argument syntax and flags are checked; nothing here depends on variables or on
// other stages, so every instruction of the file can be checked before anything is compiled.

import type { HealthConfig } from '../oci/types.js';
import { DockerfileError, clipText } from './errors.js';
import { goDuration, parseGoDuration } from './gofmt.js';
import { KNOWN_INSTRUCTIONS, chompHeredoc, parseHeredocMarker, parseWords, splitWhitespace, type Heredoc, type Instruction } from './parser.js';
import { suggest } from './suggest.js';

export interface KeyValue {
  key: string;
  value: string;
}

export interface ArgDeclaration {
  key: string;
  /** The default as written (quotes and variables not yet processed); undefined for `ARG NAME`. */
  value?: string;
}

type FlagValue = string | boolean | string[];

interface CommandBase {
  instr: Instruction;
  /** Flags by name after validation: string flags as strings, booleans as booleans, lists as arrays. */
  flags: ReadonlyMap<string, FlagValue>;
}

export interface FromCommand extends CommandBase { kind: 'FROM'; baseName: string; stageName?: string; platform?: string }
export interface ArgCommand extends CommandBase { kind: 'ARG'; args: ArgDeclaration[] }
export interface EnvCommand extends CommandBase { kind: 'ENV'; pairs: KeyValue[] }
export interface LabelCommand extends CommandBase { kind: 'LABEL'; pairs: KeyValue[] }
export interface RunCommand extends CommandBase {
  kind: 'RUN';
  cmdLine: string[];
  prependShell: boolean;
  /** Here-documents of the command line (`RUN <<EOF`), in order. */
  files?: Heredoc[];
}
export interface CmdCommand extends CommandBase { kind: 'CMD'; cmdLine: string[]; prependShell: boolean }
export interface EntrypointCommand extends CommandBase { kind: 'ENTRYPOINT'; cmdLine: string[] | null; prependShell: boolean }
/** An inline source of COPY/ADD (`COPY <<name /dest`): a file named `name` holding `data`. */
export interface SourceContent {
  name: string;
  /** The heredoc body, tabs already stripped for `<<-`, variables not yet expanded. */
  data: string;
  /** Expand variables in `data` (the delimiter was not quoted). */
  expand: boolean;
}

export interface CopyCommand extends CommandBase {
  kind: 'COPY' | 'ADD';
  /** Source paths (or URLs for ADD), as written. */
  sources: string[];
  /** Heredoc sources, in order. */
  contents: SourceContent[];
  dest: string;
  from?: string;
}
export interface WorkdirCommand extends CommandBase { kind: 'WORKDIR'; path: string }
export interface UserCommand extends CommandBase { kind: 'USER'; user: string }
export interface ExposeCommand extends CommandBase { kind: 'EXPOSE'; ports: string[] }
export interface VolumeCommand extends CommandBase { kind: 'VOLUME'; volumes: string[] }
export interface StopSignalCommand extends CommandBase { kind: 'STOPSIGNAL'; signal: string }
export interface ShellCommand extends CommandBase { kind: 'SHELL'; shell: string[] }
export interface HealthcheckCommand extends CommandBase { kind: 'HEALTHCHECK'; health: HealthConfig }
export interface MaintainerCommand extends CommandBase { kind: 'MAINTAINER'; maintainer: string }
export interface OnbuildCommand extends CommandBase { kind: 'ONBUILD'; expression: string; trigger: Command }

export type Command =
  | FromCommand | ArgCommand | EnvCommand | LabelCommand | RunCommand | CmdCommand | EntrypointCommand
  | CopyCommand | WorkdirCommand | UserCommand | ExposeCommand | VolumeCommand | StopSignalCommand
  | ShellCommand | HealthcheckCommand | MaintainerCommand | OnbuildCommand;

export interface DecodeContext {
  file: string;
  escape: string;
  /** Source lines of the file, to quote in errors. */
  lines: readonly string[];
}

type FlagKind = 'string' | 'bool' | 'list';

/** The flags each instruction accepts (BuildKit's set; some are refused later as unsupported). */
const FLAG_SPECS: Record<string, Record<string, FlagKind>> = {
  FROM: { platform: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'list' },
  ADD: {
    chown: 'string', chmod: 'string', link: 'bool', 'keep-git-dir': 'bool', checksum: 'string', unpack: 'bool', exclude: 'list',
  },
  RUN: { mount: 'list', network: 'string', security: 'string', device: 'list' },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/** Health check intervals below this are refused, as by Docker. */
const MIN_HEALTH_DURATION_NS = 1e6;

export function errorAt(
  instr: Instruction,
  ctx: Pick<DecodeContext, 'file' | 'lines'>,
  reason: string,
  cause?: unknown,
  /** Text on the instruction's first line to point at (its column is reported). */
  at?: string,
): DockerfileError {
  const first = ctx.lines[instr.startLine - 1] ?? instr.original;
  const index = at ? first.indexOf(at) : -1;
  return new DockerfileError(
    reason,
    {
      file: ctx.file,
      line: instr.startLine,
      endLine: instr.endLine,
      ...(index >= 0 ? { column: index + 1 } : {}),
      source: ctx.lines.length > 0 ? ctx.lines.slice(instr.startLine - 1, instr.endLine) : instr.original,
    },
    cause === undefined ? undefined : { cause },
  );
}

function parseFlags(instr: Instruction, ctx: DecodeContext): Map<string, FlagValue> {
  const spec = FLAG_SPECS[instr.keyword] ?? {};
  const out = new Map<string, FlagValue>();
  for (const flag of instr.flags) {
    const kind = spec[flag.name];
    if (kind === undefined) {
      const known = Object.keys(spec).map((n) => `--${n}`);
      const hint = suggest(flag.name, Object.keys(spec));
      const extra = hint ? ` (did you mean --${hint}?)` : known.length > 0 ? ` (${instr.keyword} accepts ${known.join(', ')})` : ` (${instr.keyword} takes no flags)`;
      throw errorAt(instr, ctx, `${instr.keyword}: unknown flag: --${clipText(flag.name, 80)}${extra}`, undefined, `--${flag.name}`);
    }
    if (kind === 'list') {
      if (flag.value === undefined) throw errorAt(instr, ctx, `${instr.keyword}: missing a value on flag --${flag.name}`);
      const list = out.get(flag.name);
      // Appended in place: thousands of --mount flags on one line would otherwise be quadratic.
      if (Array.isArray(list)) list.push(flag.value);
      else out.set(flag.name, [flag.value]);
      continue;
    }
    if (out.has(flag.name)) throw errorAt(instr, ctx, `${instr.keyword}: duplicate flag specified: --${flag.name}`);
    if (kind === 'bool') {
      const v = (flag.value ?? 'true').toLowerCase();
      if (v !== 'true' && v !== 'false') {
        throw errorAt(instr, ctx, `${instr.keyword}: expecting boolean value for flag --${flag.name}, not: ${flag.value ?? ''}`);
      }
      out.set(flag.name, v === 'true');
      continue;
    }
    if (flag.value === undefined) throw errorAt(instr, ctx, `${instr.keyword}: missing a value on flag --${flag.name}`);
    out.set(flag.name, flag.value);
  }
  return out;
}

export function stringFlag(cmd: { flags: ReadonlyMap<string, FlagValue> }, name: string): string | undefined {
  const v = cmd.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** Decodes one instruction; throws a DockerfileError naming its line when it is malformed. */
export function decodeInstruction(instr: Instruction, ctx: DecodeContext): Command {
  if (!KNOWN_INSTRUCTIONS.includes(instr.keyword)) {
    const hint = suggest(instr.keyword, KNOWN_INSTRUCTIONS);
    throw errorAt(instr, ctx, `unknown instruction "${clipText(instr.keyword, 80)}"${hint ? ` (did you mean ${hint}?)` : ''}`);
  }
  const flags = parseFlags(instr, ctx);
  const base = { instr, flags };
  const fail = (reason: string): never => {
    throw errorAt(instr, ctx, reason);
  };
  const exactlyOne = (): string => (instr.args === '' ? fail(`${instr.keyword} requires exactly one argument`) : instr.args);

  switch (instr.keyword) {
    case 'FROM':
      return decodeFrom(base, fail);
    case 'ARG':
      return { ...base, kind: 'ARG', args: decodeArgs(instr.args, ctx.escape, fail) };
    case 'ENV':
    case 'LABEL':
      return { ...base, kind: instr.keyword, pairs: decodeKeyValues(instr.args, instr.keyword, ctx.escape, fail) };
    case 'RUN':
      if (!instr.json && instr.args === '') fail('RUN requires at least one argument');
      return {
        ...base,
        kind: 'RUN',
        cmdLine: instr.json ?? [instr.args],
        prependShell: !instr.json,
        ...(instr.heredocs && instr.heredocs.length > 0 ? { files: instr.heredocs } : {}),
      };
    case 'CMD':
      return { ...base, kind: 'CMD', cmdLine: instr.json ?? [instr.args], prependShell: !instr.json };
    case 'ENTRYPOINT': {
      const cmdLine = instr.json ?? [instr.args];
      return { ...base, kind: 'ENTRYPOINT', cmdLine: instr.json && cmdLine.length === 0 ? null : cmdLine, prependShell: !instr.json };
    }
    case 'COPY':
    case 'ADD': {
      const words = instr.json ?? splitWhitespace(instr.args);
      if (words.length < 2) {
        fail(`${instr.keyword} requires at least two arguments, but only ${words.length === 1 ? 'one was' : 'none were'} provided. Destination could not be determined`);
      }
      const from = stringFlag(base, 'from');
      const heredoc = (word: string) => {
        try {
          return parseHeredocMarker(word);
        } catch (err) {
          return fail(`${instr.keyword}: ${(err as Error).message}`);
        }
      };
      const dest = words[words.length - 1] as string;
      if (!instr.json && heredoc(dest)) fail(`${instr.keyword} cannot accept a heredoc as a destination (${dest}); put the destination last`);
      const sources: string[] = [];
      const contents: SourceContent[] = [];
      for (const word of words.slice(0, -1)) {
        const marker = instr.json ? undefined : heredoc(word);
        const doc = marker && instr.heredocs?.find((h) => h.name === marker.name);
        if (!marker || !doc) {
          sources.push(word);
          continue;
        }
        contents.push({ name: marker.name, data: marker.chomp ? chompHeredoc(doc.content) : doc.content, expand: marker.expand });
      }
      if (contents.length > 0 && from !== undefined) fail(`${instr.keyword} --from cannot be used with a heredoc source (<<${contents[0]?.name ?? ''})`);
      return { ...base, kind: instr.keyword, sources, contents, dest, ...(from !== undefined ? { from } : {}) };
    }
    case 'WORKDIR':
      return { ...base, kind: 'WORKDIR', path: exactlyOne() };
    case 'USER':
      return { ...base, kind: 'USER', user: exactlyOne() };
    case 'MAINTAINER':
      return { ...base, kind: 'MAINTAINER', maintainer: exactlyOne() };
    case 'STOPSIGNAL':
      return { ...base, kind: 'STOPSIGNAL', signal: exactlyOne() };
    case 'EXPOSE': {
      const ports = splitWhitespace(instr.args);
      if (ports.length === 0) fail('EXPOSE requires at least one argument');
      return { ...base, kind: 'EXPOSE', ports };
    }
    case 'VOLUME': {
      const volumes = (instr.json ?? splitWhitespace(instr.args)).map((v) => v.trim());
      if (volumes.length === 0) fail('VOLUME requires at least one argument');
      if (volumes.some((v) => v === '')) fail('VOLUME specified can not be an empty string');
      return { ...base, kind: 'VOLUME', volumes };
    }
    case 'SHELL':
      if (!instr.json) fail('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]');
      if (instr.json?.length === 0) fail('SHELL requires at least one argument');
      return { ...base, kind: 'SHELL', shell: instr.json ?? [] };
    case 'HEALTHCHECK':
      return { ...base, kind: 'HEALTHCHECK', health: decodeHealthcheck(instr, flags, fail) };
    case 'ONBUILD':
      return decodeOnbuild(base, ctx, fail);
    default:
      return fail(`unknown instruction "${instr.keyword}"`);
  }
}

const STAGE_NAME_RE = /^[a-z][a-z0-9-_.]*$/;

function decodeFrom(base: CommandBase, fail: (reason: string) => never): FromCommand {
  const words = splitWhitespace(base.instr.args);
  let stageName: string | undefined;
  if (words.length === 3 && (words[1] as string).toLowerCase() === 'as') {
    stageName = (words[2] as string).toLowerCase();
    if (!STAGE_NAME_RE.test(stageName)) {
      fail(`invalid name for build stage: "${words[2] ?? ''}", name can't start with a number or contain symbols (allowed: a-z, 0-9, "-", "_", ".")`);
    }
  } else if (words.length !== 1) {
    fail('FROM requires either one or three arguments (FROM <image> [AS <name>])');
  }
  const platform = stringFlag(base, 'platform');
  return {
    ...base,
    kind: 'FROM',
    baseName: words[0] as string,
    ...(stageName !== undefined ? { stageName } : {}),
    ...(platform !== undefined ? { platform } : {}),
  };
}

function decodeArgs(args: string, escape: string, fail: (reason: string) => never): ArgDeclaration[] {
  const words = parseWords(args, escape);
  if (words.length === 0) fail('ARG requires at least one argument');
  return words.map((word) => {
    const eq = word.indexOf('=');
    if (eq < 0) return { key: word };
    if (eq === 0) fail('ARG names can not be blank');
    return { key: word.slice(0, eq), value: word.slice(eq + 1) };
  });
}

/** `KEY=value …`, or the legacy `KEY value with spaces` (ENV and LABEL). */
function decodeKeyValues(args: string, keyword: string, escape: string, fail: (reason: string) => never): KeyValue[] {
  const words = parseWords(args, escape);
  if (words.length === 0) fail(`${keyword} requires at least one argument`);
  if (!(words[0] as string).includes('=')) {
    const m = /[\t\v\f\r ]+/.exec(args);
    if (!m) return fail(`${keyword} must have two arguments (${keyword} <key>=<value>)`);
    return [{ key: args.slice(0, m.index), value: args.slice(m.index + m[0].length) }];
  }
  return words.map((word) => {
    const eq = word.indexOf('=');
    if (eq < 0) fail(`Syntax error - can't find = in "${word}". Must be of the form: name=value`);
    if (eq === 0) fail(`${keyword} names can not be blank`);
    return { key: word.slice(0, eq), value: word.slice(eq + 1) };
  });
}

function decodeHealthcheck(instr: Instruction, flags: ReadonlyMap<string, FlagValue>, fail: (reason: string) => never): HealthConfig {
  const m = /^(\S+)\s*/u.exec(instr.args);
  if (!m) return fail('HEALTHCHECK requires at least one argument');
  const type = (m[1] as string).toUpperCase();
  const rest = instr.args.slice(m[0].length);
  if (type === 'NONE') {
    if (rest !== '') fail('HEALTHCHECK NONE takes no arguments');
    return { Test: ['NONE'] };
  }
  if (type !== 'CMD') fail(`unknown type "${type}" in HEALTHCHECK (try CMD)`);
  const cmd = instr.json ?? [rest];
  if (cmd.length === 0 || (!instr.json && rest === '')) fail('missing command after HEALTHCHECK CMD');
  const health: HealthConfig = { Test: [instr.json ? 'CMD' : 'CMD-SHELL', ...cmd] };
  const durations = [
    ['interval', 'Interval'],
    ['timeout', 'Timeout'],
    ['start-period', 'StartPeriod'],
    ['start-interval', 'StartInterval'],
  ] as const;
  for (const [flag, field] of durations) {
    const text = flags.get(flag);
    if (typeof text !== 'string' || text === '') continue;
    let ns = 0;
    try {
      ns = parseGoDuration(text);
    } catch (err) {
      fail(`HEALTHCHECK --${flag}: ${(err as Error).message}`);
    }
    if (ns !== 0 && ns < MIN_HEALTH_DURATION_NS) fail(`HEALTHCHECK --${flag} cannot be less than ${goDuration(MIN_HEALTH_DURATION_NS)}`);
    if (ns !== 0) health[field] = ns;
  }
  const retries = flags.get('retries');
  if (typeof retries === 'string' && retries !== '') {
    if (!/^[-+]?\d+$/.test(retries)) fail(`HEALTHCHECK --retries: invalid number "${retries}"`);
    const n = Number(retries);
    if (n < 0) fail(`--retries cannot be negative (${n})`);
    if (n !== 0) health.Retries = n;
  }
  return health;
}

function decodeOnbuild(base: CommandBase, ctx: DecodeContext, fail: (reason: string) => never): OnbuildCommand {
  const { instr } = base;
  const triggerInstr = instr.trigger ?? fail('ONBUILD requires at least one argument');
  if (triggerInstr.keyword === 'ONBUILD') fail('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
  if (triggerInstr.keyword === 'MAINTAINER' || triggerInstr.keyword === 'FROM') {
    fail(`${triggerInstr.keyword} isn't allowed as an ONBUILD trigger`);
  }
  const trigger = decodeInstruction(triggerInstr, ctx);
  const expression = instr.original.replace(/^\s*ONBUILD\s*/i, '');
  return { ...base, kind: 'ONBUILD', expression, trigger };
}
