// The command line's exit codes: one per kind of failure, so a script can tell a failed step from
// a typo in its own command line, a registry that refused, or a Ctrl-C (README "Exit codes").

import { DockerfileError } from '../frontend/errors.js';
import { RegistryError } from '../registry/errors.js';
import { StepError } from '../solver/errors.js';

export const ExitCode = {
  ok: 0,
  /** A step failed (RUN exited non-zero, a COPY source is missing), or anything else went wrong. */
  failed: 1,
  /** Bad usage: an unknown command or flag, a bad flag value, a Dockerfile that does not parse or compile. Nothing ran. */
  usage: 2,
  /** A registry could not be reached, refused the credentials, or has no such image; or a push was refused. */
  registry: 3,
  /** 128 + the signal's number, as shells report it: 130 for Ctrl-C (SIGINT), 143 for SIGTERM. */
  interrupted: 130,
} as const;

/** A mistake in the command line: printed without a stack, exits with ExitCode.usage. */
export class UsageError extends Error {}

/** The exit code for an error that ended a command, from the error and its causes. */
export function exitCodeOf(err: unknown): number {
  const chain = causes(err);
  if (chain.some((e) => e instanceof RegistryError)) return ExitCode.registry;
  if (chain.some((e) => e instanceof StepError)) return ExitCode.failed;
  if (chain.some((e) => e instanceof UsageError || e instanceof DockerfileError || isParseArgsError(e))) return ExitCode.usage;
  return ExitCode.failed;
}

/** node:util parseArgs refusing an unknown option or a missing value. */
function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/** `err`, then its cause, its cause's cause… (bounded: a cause may point back). */
export function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 16 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}
