// `import --change`: Dockerfile instructions applied to an empty image config, as `docker import
// -c` and `docker commit -c` do. They are compiled as the lines of a `FROM scratch` stage, so
// their syntax and meaning are the Dockerfile's; only the instructions docker allows there are.

import type { ContainerConfig, Platform } from '../oci/types.js';
import { compile } from './compile.js';
import { DockerfileError } from './errors.js';
import { parseDockerfile } from './parser.js';

/** Instructions `docker import --change` accepts. */
const CHANGE_INSTRUCTIONS = new Set(['CMD', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'LABEL', 'ONBUILD', 'USER', 'VOLUME', 'WORKDIR']);
/** Errors name a change by its position: `--change 2`. */
const SOURCE = '--change';

export async function configFromChanges(changes: readonly string[], platform: Platform): Promise<ContainerConfig> {
  // Line 1 is the FROM; change i is line i + 1.
  const dockerfile = parseDockerfile(['FROM scratch', ...changes.map((c) => c.replaceAll('\n', ' '))].join('\n'), SOURCE);
  for (const ins of dockerfile.instructions.slice(1)) {
    if (!CHANGE_INSTRUCTIONS.has(ins.keyword)) {
      throw new DockerfileError(`${ins.keyword} is not a valid change command (use one of ${[...CHANGE_INSTRUCTIONS].join(', ')})`, { file: SOURCE, line: ins.startLine - 1 });
    }
  }
  const compiled = await compile(dockerfile, {
    file: SOURCE,
    buildArgs: {},
    dockerignore: [],
    platform,
    resolveImage: () => Promise.reject(new Error('--change cannot name an image')),
  }).catch((err: unknown) => {
    if (err instanceof DockerfileError && err.file === SOURCE) throw new DockerfileError(err.reason, { file: SOURCE, line: err.line - 1 }, { cause: err });
    throw err;
  });
  const config = { ...compiled.image.config };
  // A stage gets a default PATH; an imported image has only the Env its changes set, as docker's.
  const setsPath = dockerfile.instructions.some((i) => i.keyword === 'ENV' && /(^|\s)PATH[=\s]/.test(i.args));
  if (!setsPath) {
    const env = (config.Env ?? []).filter((e) => !e.startsWith('PATH='));
    if (env.length > 0) config.Env = env;
    else delete config.Env;
  }
  return config;
}
