// Grammar-aware mutations of Dockerfiles: each input is a corpus file changed a few times at the
// level of instructions, flags, words, quotes, heredocs, continuations and directives. Input `i`
// of seed `s` depends on nothing else, so any single input can be rebuilt to replay a failure.

import { seededRandom } from '../helpers/random.js';

/** The seed of input `index`: inputs are independent of each other. */
export function inputSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

type Rand = () => number;

const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, items: readonly T[]): T => items[int(r, items.length)] as T;

const KEYWORDS = [
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER',
  'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
];

const FLAGS = [
  '--from=builder', '--from=0', '--from=7', '--from=$X', '--from=alpine:3.19', '--from=', '--mount=type=cache,target=/root/.cache',
  '--mount=type=bind,source=.,target=/src', '--mount=type=secret,id=tok', '--mount=type=tmpfs,target=/tmp', '--mount=', '--mount=type=nope',
  '--chmod=0755', '--chmod=u+x', '--chmod=99999', '--chown=1000:1000', '--chown=$U:$G', '--platform=linux/arm64', '--platform=$BUILDPLATFORM',
  '--platform=', '--network=none', '--network=bridge', '--security=insecure', '--link', '--link=false', '--link=maybe', '--exclude=*.md',
  '--parents', '--checksum=sha256:0000', '--keep-git-dir', '--unpack=true', '--interval=5s', '--timeout=0s', '--retries=-1',
  '--start-period=1ns', '--frobnicate', '--', '--"quoted=x"', '--a\\ b',
];

const EXPANSIONS = [
  '$A', '${A}', '${A:-${B:+x}}', '${A-default}', '${A:+alt}', '${A+alt}', '${A:?is required}', '${A?}', '${A#*/}', '${A##*/}',
  '${A%.*}', '${A%%.*}', '${A/a/b}', '${A//a/b}', '${A//}', '${A/', '${', '${}', '${:-x}', '${A:-', '$', '$$', '$1', '${10}',
  '${A:=x}', '${A^^}', '${#A}', '${A:1:2}', '${A//\\*/x}', '${A/\\q/x}', '$PATH', '${PATH}:/x', '${TARGETARCH}', '${BUILDPLATFORM}',
  '"$A"', "'$A'", '\\$A', '${A:-${B:-${C:-${D}}}}', '${A%%\\}}', '${A/\\//_}',
];

const UNICODE = [
  '\uFEFF', '\u00A0', '\u2028', '\u2029', '\u0085', '\u200B', 'é', 'ǅ', '\u0301', '😀', '\uD800', '\uDC00', 'İ', 'ß', '\u3000', '\t',
  '\r', '\v', '\f', '\u0000', '\u001B[31m', '٣', '𝟘',
];

const BRACKETS = ['"', "'", '[', ']', '{', '}', '(', ')', '`', '\\', '<<', '<<-', '#', '=', ',', '"]', '["', '[]'];

const WHOLE = [
  'FROM scratch',
  'FROM alpine:3.19 AS builder',
  'FROM builder AS next',
  'FROM ${BASE:-alpine} AS b2',
  'FROM --platform=$BUILDPLATFORM node AS build',
  'FROM 0',
  'FROM scratch AS scratch',
  'FROM a b c',
  'ARG A=xx',
  'ARG B=$A$A',
  'ARG C=${B}${B}${B}',
  'ARG',
  'ARG =x',
  'ARG A="quoted value" B=\'single\'',
  'ENV A=1 B=$A',
  'ENV LEGACY value with spaces',
  'ENV',
  'ENV =x',
  'LABEL a=b "c d"="e f"',
  'LABEL __proto__=x constructor=y',
  'EXPOSE 80 443/tcp 53/udp 8000-8010',
  'EXPOSE 70000',
  'EXPOSE 10-1',
  'EXPOSE $PORT',
  'VOLUME ["/data", "/logs"]',
  'VOLUME [""]',
  'WORKDIR /app',
  'WORKDIR ../..',
  'WORKDIR $HOME/x',
  'USER 1000:1000',
  'STOPSIGNAL SIGKILL',
  'STOPSIGNAL 0',
  'STOPSIGNAL SIGNOPE',
  'HEALTHCHECK NONE',
  'HEALTHCHECK --interval=30s CMD curl -f http://localhost/ || exit 1',
  'HEALTHCHECK CMD ["true"]',
  'HEALTHCHECK BOGUS',
  'HEALTHCHECK CMD',
  'SHELL ["/bin/bash", "-eo", "pipefail", "-c"]',
  'SHELL /bin/sh',
  'SHELL []',
  'ONBUILD RUN echo hi',
  'ONBUILD ONBUILD RUN x',
  'ONBUILD FROM x',
  'ONBUILD',
  'MAINTAINER someone <a@b.c>',
  'CMD ["node", "server.js"]',
  'CMD ["a", 1]',
  'CMD [',
  'ENTRYPOINT []',
  'ENTRYPOINT ["/bin/sh", "-c"]',
  'RUN ["echo", "json"]',
  'RUN echo "unterminated',
  'RUN echo hi && \\',
  'COPY . /app/',
  'COPY --from=builder /out /usr/local/bin/',
  'COPY a b c',
  'COPY a',
  'COPY ["a", "b/"]',
  'ADD https://example.invalid/file.tar.gz /tmp/',
  'ADD --checksum=sha256:0123456789012345678901234567890123456789012345678901234567890123 https://127.0.0.1:1/x /x',
  'ADD git@github.com:moby/buildkit.git /src',
  'ADD archive.tar.gz /opt/',
  'FOO bar',
  'RUNN echo typo',
  'copy lower case',
  '# comment',
  '',
  '   ',
  '\\',
];

const HEREDOCS = [
  'RUN <<EOF\necho one\necho two\nEOF',
  'RUN <<-EOF\n\techo tabbed\n\tEOF',
  "RUN <<'EOF'\necho $NOT_EXPANDED\nEOF",
  'RUN <<"EOF" bash\nset -e\nEOF',
  'RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF',
  'RUN cat <<A > /a && cat <<B > /b\na\nA\nb\nB',
  'COPY <<a.txt <<b.txt /dir/\nhello\na.txt\nworld\nb.txt',
  'COPY <<EOF /etc/conf\nvalue=$A\nEOF',
  'COPY --from=builder <<EOF /x\nx\nEOF',
  'COPY <<EOF\nno dest\nEOF',
  'RUN <<EOF\nnever terminated',
  'RUN 3<<EOF cat <&3\nfd\nEOF',
  'RUN <<\nEOF',
  'RUN <<EOF <<EOF\na\nEOF\nb\nEOF',
  'ADD <<EOF /x\n${A:-${B}}\nEOF',
];

const DIRECTIVES = [
  '# escape=`',
  '# escape=\\',
  '# escape=x',
  '# syntax=docker/dockerfile:1',
  '# check=skip=all',
  '# check=error=true',
  '# check=skip=UndefinedVar;error=true',
  '#escape = `',
];

function splitLines(text: string): string[] {
  return text.replace(/\n$/, '').split('\n');
}

/** A position in the line, mostly after the keyword (a broken keyword only tests one error). */
function position(r: Rand, line: string): number {
  const space = line.indexOf(' ');
  return space >= 0 && r() < 0.85 ? space + 1 + int(r, line.length - space) : int(r, line.length + 1);
}

function mutateLine(r: Rand, line: string): string {
  const words = line.split(' ');
  switch (int(r, 12)) {
    case 0: {
      // a flag after the keyword
      words.splice(1, 0, pick(r, FLAGS));
      return words.join(' ');
    }
    case 1: {
      // a word replaced by (or wrapped in) a variable expansion
      const at = 1 + int(r, Math.max(1, words.length - 1));
      words[at] = r() < 0.5 ? pick(r, EXPANSIONS) : `${words[at] ?? ''}${pick(r, EXPANSIONS)}`;
      return words.join(' ');
    }
    case 2: {
      const at = position(r, line);
      return line.slice(0, at) + pick(r, UNICODE) + line.slice(at);
    }
    case 3: {
      const at = position(r, line);
      return line.slice(0, at) + pick(r, BRACKETS) + line.slice(at);
    }
    case 4: {
      // a very long word
      const at = 1 + int(r, words.length);
      words.splice(at, 0, pick(r, ['x', '$A', '"', '\\', ' ', '${A:-', '}', '-', 'é']).repeat(100 + int(r, 10000)));
      return words.join(' ');
    }
    case 5: {
      // the rest as a JSON array, valid or not
      const [keyword, ...rest] = words;
      const json = r() < 0.7 ? JSON.stringify(rest) : `[${rest.map((w) => `"${w}"`).join(',')}`;
      return `${keyword ?? ''} ${json}`;
    }
    case 6: {
      // keyword case or spelling
      const [keyword = '', ...rest] = words;
      const k = r() < 0.8 ? keyword.toLowerCase() : keyword.slice(0, -1) + pick(r, ['', 'X', keyword.slice(-1), keyword.slice(-1).repeat(2)]);
      return [k, ...rest].join(' ');
    }
    case 7:
      return `ONBUILD ${line}`;
    case 8:
      // a continuation in the middle of the line
      return words.length > 1 ? `${words.slice(0, 1).join(' ')} \\\n${pick(r, ['', '# c', '  ', '\t'])}\n  ${words.slice(1).join(' ')}` : `${line} \\`;
    case 9:
      return line.replace(/\s+/g, pick(r, ['\t', '   ', ' \\\n ', '\u00A0']));
    case 10:
      return `${line}${pick(r, [' \\', ' `', ' # trailing', '\r', ' &&', ' "', " '", ' ${'])}`;
    default:
      // a word dropped
      words.splice(1 + int(r, Math.max(1, words.length - 1)), 1);
      return words.join(' ');
  }
}

/** A mutated Dockerfile: one corpus file (or two spliced) changed 1 to 6 times. */
export function mutate(seed: number, corpus: readonly string[]): string {
  const r = seededRandom(seed);
  let lines = splitLines(pick(r, corpus));
  if (r() < 0.1) {
    // splice another file's tail (more stages, names to refer to)
    const other = splitLines(pick(r, corpus));
    lines = [...lines, ...other.slice(int(r, other.length))];
  }
  const count = 1 + int(r, 6);
  for (let m = 0; m < count; m++) {
    const at = int(r, lines.length);
    // Big inputs (many copies, doubling ARGs) are rarer: each costs as much as dozens of others.
    const kind = int(r, 40);
    switch (kind < 7 ? kind : kind < 38 ? 9 : kind - 31) {
      case 0:
        lines.splice(at, 1);
        break;
      case 1:
        lines.splice(int(r, lines.length + 1), 0, lines[at] ?? '');
        break;
      case 2: {
        const other = int(r, lines.length);
        [lines[at], lines[other]] = [lines[other] ?? '', lines[at] ?? ''];
        break;
      }
      case 3:
      case 4:
        lines.splice(int(r, lines.length + 1), 0, pick(r, WHOLE));
        break;
      case 5:
        lines.splice(int(r, lines.length + 1), 0, pick(r, HEREDOCS));
        break;
      case 6:
        lines.unshift(pick(r, DIRECTIVES));
        break;
      case 7: {
        // many copies of one instruction (long files, deep chains of steps)
        const copies = Array.from({ length: 20 + int(r, 600) }, () => lines[at] ?? '');
        lines.splice(at, 0, ...copies);
        break;
      }
      case 8:
        // doubling ARGs
        lines.splice(at, 0, 'ARG L0=xx', ...Array.from({ length: 5 + int(r, 30) }, (_, i) => `ARG L${i + 1}=$L${i}$L${i}`), `RUN echo $L${5}`);
        break;
      default:
        lines[at] = mutateLine(r, lines[at] ?? '');
    }
  }
  let text = lines.join('\n');
  if (r() < 0.1) text = text.replace(/\n/g, '\r\n');
  if (r() < 0.2) text += '\n';
  return text;
}
