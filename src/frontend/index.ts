// The Dockerfile frontend: parse a Dockerfile, compile it into a Definition and an image spec.
//
//   const df = parseDockerfile(text, 'Dockerfile');
//   const { definition, root, image } = await compile(df, { file: 'Dockerfile', platform, resolveImage, … });

export { parseDockerfile, parseWords, parseHeredocMarker, chompHeredoc, KNOWN_INSTRUCTIONS, HEREDOC_INSTRUCTIONS } from './parser.js';
export type { Dockerfile, EscapeChar, Heredoc, Instruction, InstructionFlag, ParseWarning } from './parser.js';
export { parseMount } from './mounts.js';
export type { MountType, RunMount } from './mounts.js';
export { ShellLex, ShellExpansionError, expandWord, expandWords } from './shell-lexer.js';
export type { EnvLookup, EnvSource, LexOptions, ProcessResult } from './shell-lexer.js';
export { DockerfileError, isDockerfileError } from './errors.js';
export type { ErrorLocation } from './errors.js';
export { compile } from './compile.js';
export type { CompileOptions, CompileResult, Entitlement, ImageResolver, ResolvedImage, StageInfo } from './compile.js';
export type { CompileWarning } from './lint.js';
export { parseDockerignore } from './dockerignore.js';
