// Differential test against BuildKit: Dockerfiles in the corpus' style (on a busybox base image
// served by a local registry) built by `docker build` (BuildKit) and by builder; the whole image
// configs and the unpacked filesystems must agree (see test/helpers/differential.ts for what is
// compared). Needs a working docker engine (`docker info`); without one the tests are skipped,
// with the reason in their name. test/differential/instructions.test.ts covers each instruction.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DOCKER, compareBuilds, dockerSkipReason, writeContext, type DiffCase } from '../helpers/differential.js';
import { useBuildFixture } from '../helpers/fixture.js';

const skipReason = dockerSkipReason();
if (skipReason) console.warn(`differential tests against BuildKit skipped: ${skipReason}`);

/** Dockerfiles for both builders; `@@BASE@@` is replaced by the local registry's busybox image. */
const CASES: Record<string, DiffCase> = {
  'multi-stage-arg-from': {
    dockerfile: `ARG BASE_IMAGE=@@BASE@@
FROM \${BASE_IMAGE} AS build
WORKDIR /src
COPY app/ ./
RUN set -eux; \\
    mkdir -p /out; \\
    for f in *.txt; do \\
      tr a-z A-Z < "$f" > "/out/$f"; \\
    done; \\
    echo built > /out/STAMP

FROM \${BASE_IMAGE}
ARG VERSION=1.2.3
ENV APP_HOME=/opt/app \\
    APP_VERSION=\${VERSION}
LABEL org.opencontainers.image.version="\${VERSION}" maintainer="corpus"
WORKDIR \${APP_HOME}
COPY --from=build /out/ ./data/
COPY --chown=1000:1000 app/config.ini /etc/app/
EXPOSE 8080 9000-9002/udp
VOLUME ["/var/lib/app"]
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s CMD ["wget", "-q", "-O-", "http://localhost:8080/"]
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /opt/app/data/STAMP"]
`,
    files: { 'app/a.txt': 'alpha\n', 'app/b.txt': 'beta\n', 'app/config.ini': '[app]\nport=8080\n' },
  },
  'shell-and-env': {
    dockerfile: `FROM @@BASE@@
SHELL ["/bin/sh", "-e", "-c"]
ENV A=1 B="two words"
ENV C=$A-$B
RUN echo "$C" > /c.txt && ln -s /c.txt /link && mkdir -p /d/e && chmod 0750 /d/e
WORKDIR relative/dir
RUN pwd > /pwd.txt
ONBUILD RUN echo child
CMD echo "$C"
`,
  },
  // (A COPY --from naming a stage defined later is left out: Docker 20.10's BuildKit copies from
  // that stage's base, before its instructions; builder compiles stages in dependency order.)
  'args-copy-onbuild': {
    dockerfile: `ARG TAG=latest
ARG GLOBAL=global-value
FROM @@BASE@@ AS assets
RUN mkdir -p /out/nested && echo asset > /out/nested/a.txt && ln -s nested/a.txt /out/link

FROM @@BASE@@ AS app
ARG TAG
ARG LOCAL=local
ENV SEEN="tag=\${TAG} global=\${GLOBAL} local=\${LOCAL}"
COPY --from=assets /out/ /srv/
RUN echo "$SEEN" > /srv/seen.txt

FROM app AS parent
ONBUILD RUN echo triggered > /srv/onbuild.txt
ONBUILD ENV FROM_TRIGGER=yes

FROM parent
LABEL stage=final
WORKDIR /srv
CMD ["cat", "seen.txt"]
`,
  },
  'add-archive-and-dockerignore': {
    dockerfile: `FROM @@BASE@@
ADD payload.tar.gz /payload/
COPY . /ctx/
RUN rm -rf /ctx/Dockerfile
`,
    files: { 'keep.txt': 'keep\n', 'skip.log': 'skip\n', '.dockerignore': '*.log\n' },
    tarballs: { 'payload.tar.gz': { 'sub/x.txt': 'x\n' } },
    mtimes: ['/payload/', '/ctx/'],
  },
  // Symlinked sources are followed inside the context (an absolute target is taken from the
  // context's root); symlinks inside a copied directory stay symlinks.
  'symlinked-sources': {
    dockerfile: `FROM @@BASE@@
COPY link.txt /x
COPY dirlink /d/
COPY abs/sub/b.txt /b
COPY w*.txt /w/
COPY real/ /tree/
`,
    files: { 'real/a.txt': 'A\n', 'real/sub/b.txt': 'B\n' },
    links: { 'link.txt': 'real/a.txt', dirlink: 'real', abs: '/real', 'w1.txt': '/real/a.txt', 'real/inner': 'a.txt' },
  },
};

describe.skipIf(Boolean(skipReason))(`differential: builder vs BuildKit${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const fixture = useBuildFixture('diff');
  const images: string[] = [];

  afterAll(() => {
    for (const img of images) spawnSync(DOCKER, ['rmi', '-f', img]);
  });

  for (const [name, spec] of Object.entries(CASES)) {
    it(`${name}: same config and same filesystem`, async () => {
      const ctx = join(fixture.work, name);
      await writeContext(ctx, spec, fixture.base);
      const diff = await compareBuilds(ctx, spec, { work: fixture.work, name, root: join(fixture.work, 'root'), images });
      expect([...diff.config, ...diff.filesystem]).toEqual([]);
      expect(diff.theirs.tree.size).toBeGreaterThan(100);
    });
  }
});
