// Pushing a new layer of about 80 MB (the source tree's COPY) to the local registry. Before each
// run the tool rebuilds after an edit of its own, untimed, so the layer is new to the registry;
// the run is what a user types to ship it: builder `build --push`, the peers `build` + `push`
// (both builds fully cached by then; compressing the layer is part of every tool's push).
import { writeDockerfile } from '../lib/scenario.mjs';
import { SOURCE_DOCKERFILE, editSourceTree } from './source-tree.mjs';

export default {
  name: 'push',
  title: 'push of a new 80 MB layer (build + push, build cached)',
  async prepare(env) {
    const opts = { file: writeDockerfile(env, 'push', SOURCE_DOCKERFILE(await env.image('busybox'))), context: (await env.sourceTree()).dir };
    const tag = (tool, round) => `${env.registry}/bench/push-${tool.name}:r${round}`;
    return {
      before: async (tool, round) => {
        await editSourceTree(env, `${tool.name} round ${round}`);
        await tool.build({ ...opts, tag: tag(tool, round) });
      },
      run: (tool, round) => tool.build({ ...opts, tag: tag(tool, round), push: true }),
    };
  },
};
