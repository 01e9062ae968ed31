// Lints: warnings about a Dockerfile that builds but probably not as meant, under BuildKit's rule
// names, and the `# check=` directive that skips rules or makes them fail the build. The compiler
// and the dispatcher report what they see; each rule's condition and message live here.
// NoEmptyContinuation is found by the parser (the empty lines are gone after it) and reported
// through here like the rest.

import type { Platform } from '../definition/index.js';
import { formatPlatform, platformOf } from '../oci/platform.js';
import type { ImageConfigFile } from '../oci/types.js';
import { DockerfileError } from './errors.js';
import type { Command, CopyCommand } from './instructions.js';
import type { StageState } from './stage-state.js';

export const LINT_RULES = [
  'FromWithoutTag', 'JSONArgsRecommended', 'CopyAllBeforeInstall', 'UndefinedVar', 'SecretsUsedInArgOrEnv', 'NoEmptyContinuation',
  'ReservedStageName', 'InvalidBaseImagePlatform',
] as const;

export interface CompileWarning {
  file: string;
  /** 0 when the warning is not about a line (e.g. an unused --build-arg). */
  line: number;
  message: string;
  /**
   * For lints, the rule's name (BuildKit's check names where one exists: `UndefinedVar`,
   * `JSONArgsRecommended`, `SecretsUsedInArgOrEnv`, `NoEmptyContinuation`, `ReservedStageName`,
   * `FromWithoutTag`, `CopyAllBeforeInstall`). Lints fail a build only under `# check=error=true`.
   */
  rule?: string;
}

const RESERVED_STAGE_NAMES = new Set(['scratch', 'context']);

/**
 * Commands that install dependencies from manifests (for the CopyAllBeforeInstall lint). The
 * bounded `{0,200}` keeps a long command of many `mvn ` words from backtracking quadratically.
 */
const DEPENDENCY_INSTALL =
  /\b(?:npm (?:ci|install|i)|yarn(?: install)?(?=\s|$|;|&)|pnpm (?:install|i)|pip3? install|poetry install|pipenv install|bundle install|composer install|go mod download|cargo (?:build|fetch)|mvn [^;&|]{0,200}dependency:|gradle [^;&|]{0,200}dependencies|dotnet restore|mix deps\.get)\b/;

/**
 * ARG/ENV names the SecretsUsedInArgOrEnv lint reports, and the words that clear a name again,
 * as BuildKit's: a whole `_`-separated word of the name, in any case (API_TOKEN, db_password,
 * AUTH; not AUTHOR, PUBLIC_KEY or GPG_KEY_FILE).
 */
const SECRET_NAME = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/iu;
const NOT_SECRET_NAME = /(?:_|^)(?:public|file|version)(?:_|$)/iu;

/** `${NAME:-…}`, `${NAME+…}`, `${NAME?…}`: references that deal with NAME being unset. */
const GUARDED_REF = /\$\{([\p{L}\p{Nd}_]+|[@*#?$!0-]):?[-+=?]/gu;

/** The warnings of one compile: lints (minus those `# check=skip` silences) and plain warnings. */
export class Linter {
  readonly warnings: CompileWarning[] = [];
  private readonly seen = new Set<string>();
  private readonly checks: { skip: Set<string>; error: boolean };

  /** `check`: the value of the Dockerfile's `# check=` directive, if any. */
  constructor(
    private readonly file: string,
    check: string | undefined,
  ) {
    this.checks = parseCheckDirective(check);
  }

  /** Records a warning once per line and message; a lint (with a rule) unless its rule is skipped. */
  warn(line: number, message: string, rule?: string): void {
    if (rule && this.checks.skip.has(rule)) return;
    const key = `${line}\u0000${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.warnings.push({ file: this.file, line, message, ...(rule ? { rule } : {}) });
  }

  /** ReservedStageName: `FROM … AS scratch` or `AS context`. */
  stageName(line: number, name: string): void {
    if (RESERVED_STAGE_NAMES.has(name)) this.warn(line, `"${name}" is reserved and should not be used as a stage name`, 'ReservedStageName');
  }

  /** FromWithoutTag: a base image named without a tag or digest. */
  baseImageName(line: number, baseName: string): void {
    const lastPart = baseName.slice(baseName.lastIndexOf('/') + 1);
    if (!baseName.includes('@') && !lastPart.includes(':')) {
      this.warn(
        line,
        `FROM ${baseName} has no tag, so it means ${baseName}:latest, which changes over time; pin a version (${baseName}:<version>) or a digest for repeatable builds`,
        'FromWithoutTag',
      );
    }
  }

  /** InvalidBaseImagePlatform: a registry may serve one image for every platform. */
  baseImagePlatform(line: number, ref: string, config: ImageConfigFile, expected: Platform): void {
    if (!config.os || !config.architecture) return;
    const got = platformOf(config);
    if (got.os !== expected.os || got.architecture !== expected.architecture) {
      this.warn(
        line,
        `Base image ${ref} was pulled with platform "${formatPlatform(got)}", expected "${formatPlatform(expected)}" for current build`,
        'InvalidBaseImagePlatform',
      );
    }
  }

  /**
   * UndefinedVar: the names in `unmatched` that `word` used without a guard (`${NAME:-…}`) and
   * that are neither in the stage's environment nor declared ARGs.
   */
  undefinedVars(cmd: Command, word: string, unmatched: ReadonlySet<string>, state: Pick<StageState, 'env' | 'buildArgs'>): void {
    if (unmatched.size === 0) return;
    const guarded = new Set(Array.from(word.matchAll(GUARDED_REF), (m) => m[1]));
    for (const name of unmatched) {
      if (guarded.has(name) || state.buildArgs.some((a) => a.key === name)) continue;
      const hint = [...state.env.keys()].find((k) => k.toLowerCase() === name.toLowerCase());
      this.warn(
        cmd.instr.startLine,
        `${cmd.kind}: usage of undefined variable "$${name}"${hint ? ` (did you mean $${hint}?)` : ''}; it expands to an empty string`,
        'UndefinedVar',
      );
    }
  }

  /**
   * SecretsUsedInArgOrEnv: an ARG or ENV whose name looks like a secret (BuildKit's word lists).
   * The value is never part of the message: it may be the secret.
   */
  secretName(cmd: Command, instruction: 'ARG' | 'ENV', name: string): void {
    if (!SECRET_NAME.test(name) || NOT_SECRET_NAME.test(name)) return;
    this.warn(
      cmd.instr.startLine,
      `Do not use ARG or ENV instructions for sensitive data (${instruction} ${JSON.stringify(name)}): its value is kept in the image's config or history, readable by anyone who can pull the image`,
      'SecretsUsedInArgOrEnv',
    );
  }

  /**
   * Lints over a whole stage, once its instructions are dispatched: a broad `COPY . .` before a
   * dependency install (CopyAllBeforeInstall), and shell-form CMD/ENTRYPOINT (JSONArgsRecommended),
   * which run under `shell`.
   */
  stage(commands: readonly Command[], shell: readonly string[]): void {
    let broadCopy: CopyCommand | undefined;
    for (const cmd of commands) {
      if ((cmd.kind === 'COPY' || cmd.kind === 'ADD') && cmd.from === undefined && cmd.sources.some((s) => s === '.' || s === './' || s === '*')) {
        broadCopy ??= cmd;
      }
      if (cmd.kind === 'RUN' && broadCopy) {
        const install = DEPENDENCY_INSTALL.exec(cmd.cmdLine.join(' '));
        if (install) {
          this.warn(
            broadCopy.instr.startLine,
            `"${broadCopy.instr.original}" comes before the dependency install "${install[0].trim()}" (line ${cmd.instr.startLine}): any change to any file re-runs the install; copy only the dependency manifests first, install, then copy the rest`,
            'CopyAllBeforeInstall',
          );
          broadCopy = undefined;
        }
      }
      if ((cmd.kind === 'CMD' || cmd.kind === 'ENTRYPOINT') && cmd.prependShell) {
        this.warn(
          cmd.instr.startLine,
          `${cmd.kind} in shell form runs under "${shell.join(' ')}": the process does not receive OS signals such as SIGTERM; prefer the JSON form, e.g. ${cmd.kind} ["executable", "arg"]`,
          'JSONArgsRecommended',
        );
      }
    }
  }

  /** Under `# check=error=true`, any lint fails the build: throws naming them all. */
  enforce(lines: readonly string[]): void {
    const lints = this.warnings.filter((w) => w.rule);
    if (!this.checks.error || lints.length === 0) return;
    const line = (lints[0] as CompileWarning).line;
    throw new DockerfileError(
      `lint violations fail the build (# check=error=true): ${lints.map((w) => `${w.rule} on line ${w.line}: ${w.message}`).join('; ')}`,
      { file: this.file, line, source: lines.slice(Math.max(0, line - 1), line) },
    );
  }
}

/**
 * BuildKit's `# check=` directive: `skip=all` or `skip=Rule,Rule` silences lints, `error=true`
 * makes any remaining lint fail the build. Unknown keys are ignored, as by BuildKit.
 */
function parseCheckDirective(value: string | undefined): { skip: Set<string>; error: boolean } {
  const out = { skip: new Set<string>(), error: false };
  for (const part of (value ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const val = part.slice(eq + 1).trim();
    if (key === 'skip') {
      for (const rule of val.split(',').map((r) => r.trim()).filter(Boolean)) out.skip.add(rule === 'all' ? '*' : rule);
    } else if (key === 'error') out.error = val.toLowerCase() === 'true';
  }
  if (out.skip.has('*')) for (const rule of LINT_RULES) out.skip.add(rule);
  return out;
}
