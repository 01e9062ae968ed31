// The Dockerfile frontend: parse a Dockerfile, compile it into a Definition and an image spec.
//
//   const df = parseDockerfile(text, 'Dockerfile');
//   const { definition, root, image } = await compile(df, { file: 'Dockerfile', platform, resolveImage, … });
//
// Owns Dockerfile syntax and meaning: parsing (parser, shell-lexer), each instruction's arguments
// and flags (instructions, mounts, instruction-values), the stages and what they depend on
// (stages), ARG/ENV scoping and the build state of a stage (stage-state), turning instructions
// into ops (compile, dispatch), step names (step-names), lints and `# check=` (lint), errors
// that point at a line (errors), `.dockerignore` (dockerignore); small helpers: Go's formatting
// for history text (gofmt), image paths (paths), "did you mean" (suggest).
//
// Must not know how ops run, the filesystem, the network or registries: it never executes
// anything, and it knows images only through the injected `ImageResolver` (a pinned reference
// and a config for a name and platform). What it hands on is plain data: a Definition and an
// image spec.

export { parseDockerfile, parseWords, parseHeredocMarker, chompHeredoc, KNOWN_INSTRUCTIONS, HEREDOC_INSTRUCTIONS } from './parser.js';
export type { Dockerfile, EscapeChar, Heredoc, Instruction, InstructionFlag, ParseWarning } from './parser.js';
export { parseMount } from './mounts.js';
export type { MountType, RunMount } from './mounts.js';
export { ShellLex, ShellExpansionError, expandWord, expandWords } from './shell-lexer.js';
export type { EnvLookup, EnvSource, LexOptions, ProcessResult } from './shell-lexer.js';
export { DockerfileError, isDockerfileError } from './errors.js';
export type { ErrorLocation } from './errors.js';
export { compile, rfc3339, sourceDateEpochArg } from './compile.js';
export { configFromChanges } from './changes.js';
export type { CompileOptions, CompileResult, Entitlement, ImageResolver, LocalContext, NamedContext, ResolvedImage, RunSettings, StageInfo } from './compile.js';
export type { CompileWarning } from './lint.js';
export { parseDockerignore } from './dockerignore.js';
