// A cache shared through the registry: one machine builds and exports its cache, a fresh one
// (no state, base image not local) builds the same inputs importing it. The run is the fresh
// build; the export is untimed. builder exports a registry cache (mode=max) or an inline one;
// BuildKit (Docker 20.10 cannot export a registry cache without buildx) its inline cache; buildah
// its `--cache-to` repository.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDockerfile } from '../lib/scenario.mjs';

const MB = 20;

function project(env, base) {
  const ctx = join(env.work, 'contexts', 'remote-cache');
  mkdirSync(join(ctx, 'src'), { recursive: true });
  writeFileSync(join(ctx, 'package.json'), '{"name":"bench"}\n');
  for (let i = 0; i < 200; i++) writeFileSync(join(ctx, 'src', `f${i}.js`), `export const v${i} = ${i};\n`.repeat(20));
  // A slow, big dependency install whose result feeds only a small COPY --from.
  const file = writeDockerfile(
    env,
    'remote-cache',
    `FROM ${base} AS build
WORKDIR /app
COPY package.json .
RUN sleep 2 && head -c ${MB * 1024 * 1024} /dev/urandom > deps.bin
COPY src ./src
RUN sleep 1 && mkdir dist && cat src/*.js | wc -c > dist/size.txt

FROM ${base}
COPY --from=build /app/dist /srv/dist
CMD ["cat", "/srv/dist/size.txt"]
`,
  );
  return { file, context: ctx };
}

function scenario({ name, title, builderCache, extra }) {
  return {
    name,
    title,
    extra,
    async prepare(env) {
      const opts = project(env, await env.image('busybox'));
      // buildah's --cache-to names a repository (no tag): one per round keeps each export new.
      const ref = (tool, round) => `${env.registry}/bench/${name}-${tool.name}${tool.name === 'buildah' ? `-r${round}` : `:r${round}`}`;
      return {
        before: async (tool, round) => {
          const image = ref(tool, round);
          if (tool.name === 'builder') {
            const exporter = join(env.work, 'exporter');
            const exported = builderCache === 'inline' ? { tag: image, push: true, cacheTo: 'type=inline' } : { cacheTo: `type=registry,ref=${image},mode=max` };
            await tool.build({ ...opts, ...exported, root: exporter });
            rmSync(exporter, { recursive: true, force: true });
          } else if (tool.name === 'buildkit') {
            await tool.build({ ...opts, tag: image, push: true, buildArgs: { BUILDKIT_INLINE_CACHE: '1' } });
          } else {
            await tool.build({ ...opts, cacheTo: image });
          }
          await tool.reset();
        },
        run: (tool, round) => {
          const image = ref(tool, round);
          return tool.build({ ...opts, cacheFrom: tool.name === 'builder' ? `type=registry,ref=${image}` : image });
        },
      };
    },
  };
}

export const remoteCache = scenario({
  name: 'remote-cache',
  title: 'fresh machine with a registry cache (builder mode=max)',
  builderCache: 'registry',
});

export const remoteCacheInline = scenario({
  name: 'remote-cache-inline',
  title: 'fresh machine with an inline cache (builder type=inline)',
  builderCache: 'inline',
  extra: true,
});
