// `builder images`, `tag`, `rmi`, `push`, `inspect`, `history`, `save`, `load` and `import`:
// argument parsing and docker-like output around the library's image functions.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { LocalImage } from '../client/images.js';
import { parseReference } from '../registry/reference.js';
import { humanDuration, humanSize } from '../util/size.js';
import { createRenderer } from './progress.js';
import { dockerTable } from './table.js';
import { UsageError } from './exit-codes.js';

const ROOT_HELP = '      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)\n  -h, --help                Show this help\n';

const HELP: Record<string, string> = {
  images: `Usage: builder images [OPTIONS] [REPOSITORY[:TAG]]

List the images in the local store, one line per name, newest first.

Options:
  -q, --quiet               Only show image IDs
      --digests             Show the manifest digest each name points at
      --no-trunc            Show full image IDs
${ROOT_HELP}`,
  tag: `Usage: builder tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]

Give an image of the local store another name. SOURCE may also be an image ID.

Options:
${ROOT_HELP}`,
  rmi: `Usage: builder rmi [OPTIONS] IMAGE [IMAGE...]

Remove names from the local store ("Untagged:"); an image whose last name goes is "Deleted:" from
the list, and its blobs are freed by the next "builder prune" unless another image or the build
cache uses them. An image ID removes all its names (several only with -f).

Options:
  -f, --force               Remove every name of an image given by ID
${ROOT_HELP}`,
  push: `Usage: builder push [OPTIONS] NAME[:TAG]

Push an image of the local store to its registry, layers compressed as "build --push" sends them.

Options:
      --compression NAME    gzip (default), zstd or uncompressed, for layers stored uncompressed
      --insecure-registry H Use plain HTTP for registry H (loopback ones always are)
  -q, --quiet               Print only the pushed digest line
${ROOT_HELP}`,
  inspect: `Usage: builder inspect [OPTIONS] IMAGE [IMAGE...]

Print images of the local store as JSON, in the shape of "docker image inspect", plus their
manifest ("Descriptor", "Manifest").

Options:
${ROOT_HELP}`,
  history: `Usage: builder history [OPTIONS] IMAGE

Show the steps that made an image, newest first, with the size of each layer.

Options:
      --no-trunc            Do not truncate CREATED BY
  -q, --quiet               Only show image IDs
${ROOT_HELP}`,
  save: `Usage: builder save [OPTIONS] IMAGE [IMAGE...]

Write images of the local store to a tar archive that "docker load" (any version) reads, and that
is an OCI image layout too (index.json, blobs/sha256), as "docker save" writes since Docker 25.

Options:
  -o, --output FILE         Write to FILE instead of stdout
      --format FORMAT       docker (default) or oci (the OCI layout alone)
${ROOT_HELP}`,
  load: `Usage: builder load [OPTIONS]

Load images from a tar archive written by "docker save" (Docker 20.10's layout and Docker 25's) or
an OCI image layout tar ("--output type=oci", "skopeo copy ... oci-archive:"). Every blob is checked
against its digest, every layer against the config's diff_ids, before any name is written.

Options:
  -i, --input FILE          Read from FILE instead of stdin
  -q, --quiet               Print nothing
${ROOT_HELP}`,
  import: `Usage: builder import [OPTIONS] FILE|DIR|- [REPOSITORY[:TAG]]

Make an image of one layer from a root filesystem: a tar (plain, gzip or zstd; - reads stdin) or a
directory, as "docker import" does. The image's config is empty but for the changes given.

Options:
  -c, --change INSTRUCTION  Apply a Dockerfile instruction to the config (repeatable): CMD,
                            ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME or WORKDIR
  -m, --message TEXT        Comment for the history entry (default: "Imported from SOURCE")
${ROOT_HELP}`,
};

export const IMAGE_COMMANDS = new Set(Object.keys(HELP));

const COMMON = { root: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

export async function runImageCommand(command: string, args: string[], signal: AbortSignal): Promise<void> {
  const out = (text: string) => process.stdout.write(text);
  const parse = <T extends ParseArgsConfig['options']>(options: T) => {
    try {
      return parseArgs({ args, allowPositionals: true, strict: true, options: { ...COMMON, ...options } });
    } catch (err) {
      throw new UsageError(`builder ${command}: ${(err as Error).message}`);
    }
  };
  const help = (values: { help?: boolean | undefined }) => {
    if (values.help) out(HELP[command]!);
    return Boolean(values.help);
  };
  const count = (positionals: string[], min: number, max: number, what: string) => {
    if (positionals.length < min || positionals.length > max) throw new UsageError(`"builder ${command}" requires ${what}\n\n${HELP[command]}`);
  };
  const lib = await import('../client/images.js');

  switch (command) {
    case 'images': {
      const { values: v, positionals } = parse({ quiet: { type: 'boolean', short: 'q' }, digests: { type: 'boolean' }, 'no-trunc': { type: 'boolean' } });
      if (help(v)) return;
      count(positionals, 0, 1, 'at most 1 argument: REPOSITORY[:TAG]');
      const images = await lib.listImages({ root: v.root, filter: positionals[0] });
      const id = (i: LocalImage) => (v['no-trunc'] ? i.id : lib.shortId(i.id));
      if (v.quiet) return void out(images.map((i) => `${id(i)}\n`).join(''));
      const rows = [['REPOSITORY', 'TAG', ...(v.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE']];
      for (const i of images) {
        const ref = parseReference(i.name);
        rows.push([ref.familiarName, ref.tag ?? '<none>', ...(v.digests ? [i.target.digest] : []), id(i), ago(i.config.created), humanSize(i.size)]);
      }
      return void out(`${dockerTable(rows)}\n`);
    }
    case 'tag': {
      const { values: v, positionals } = parse({});
      if (help(v)) return;
      count(positionals, 2, 2, 'exactly 2 arguments: SOURCE_IMAGE TARGET_IMAGE');
      await lib.tagImage(positionals[0]!, positionals[1]!, { root: v.root });
      return;
    }
    case 'rmi': {
      const { values: v, positionals } = parse({ force: { type: 'boolean', short: 'f' } });
      if (help(v)) return;
      count(positionals, 1, Infinity, 'at least 1 argument: IMAGE');
      for (const r of await lib.removeImages(positionals, { root: v.root, force: v.force })) {
        for (const name of r.untagged) out(`Untagged: ${parseReference(name).familiarString}\n`);
        if (r.deleted) out(`Deleted: ${r.deleted}\n`);
      }
      return;
    }
    case 'inspect': {
      const { values: v, positionals } = parse({});
      if (help(v)) return;
      count(positionals, 1, Infinity, 'at least 1 argument: IMAGE');
      const shown = [];
      for (const ref of positionals) shown.push(dockerInspect(await lib.inspectImage(ref, { root: v.root })));
      return void out(`${JSON.stringify(shown, null, 4)}\n`);
    }
    case 'history': {
      const { values: v, positionals } = parse({ 'no-trunc': { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' } });
      if (help(v)) return;
      count(positionals, 1, 1, 'exactly 1 argument: IMAGE');
      const { id, rows } = await lib.imageHistory(positionals[0]!, { root: v.root });
      const shownId = v['no-trunc'] ? id : lib.shortId(id);
      // As docker: only the top entry is an image of its own; the steps below it are <missing>.
      const idOf = (i: number) => (i === 0 ? shownId : '<missing>');
      if (v.quiet) return void out(rows.map((_, i) => `${idOf(i)}\n`).join(''));
      const table = [['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT']];
      for (const [i, r] of rows.entries()) {
        const by = (r.created_by ?? '').replaceAll('\t', ' ');
        table.push([idOf(i), ago(r.created), v['no-trunc'] || [...by].length <= 45 ? by : `${[...by].slice(0, 44).join('')}…`, humanSize(r.size), r.comment ?? '']);
      }
      return void out(`${dockerTable(table)}\n`);
    }
    case 'push': {
      const { values: v, positionals } = parse({ compression: { type: 'string' }, 'insecure-registry': { type: 'string', multiple: true }, quiet: { type: 'boolean', short: 'q' } });
      if (help(v)) return;
      count(positionals, 1, 1, 'exactly 1 argument: NAME[:TAG]');
      const compression = v.compression ?? 'gzip';
      if (compression !== 'gzip' && compression !== 'zstd' && compression !== 'uncompressed') {
        throw new UsageError(`invalid --compression "${compression}": use gzip, zstd or uncompressed`);
      }
      const ref = parseReference(positionals[0]!);
      if (!v.quiet) process.stderr.write(`The push refers to repository [${ref.name}]\n`);
      const { push } = await import('../client/push.js');
      const r = await push({
        ref: positionals[0]!,
        root: v.root,
        compression,
        insecureRegistries: v['insecure-registry'],
        onProgress: createRenderer(v.quiet ? 'quiet' : 'plain', process.stderr, 'Pushing').onProgress,
        signal,
      });
      return void out(`${ref.tag}: digest: ${r.digest} size: ${r.size}\n`);
    }
    case 'save': {
      const { values: v, positionals } = parse({ output: { type: 'string', short: 'o' }, format: { type: 'string' } });
      if (help(v)) return;
      count(positionals, 1, Infinity, 'at least 1 argument: IMAGE');
      const format = v.format ?? 'docker';
      if (format !== 'docker' && format !== 'oci') throw new UsageError(`invalid --format "${format}": use docker or oci`);
      const dest = v.output ?? '-';
      if (dest === '-' && process.stdout.isTTY) throw new UsageError('cowardly refusing to write an archive to a terminal: use -o FILE or redirect stdout');
      const { save } = await import('../client/archive.js');
      await save({ refs: positionals, dest, format, root: v.root, signal });
      return;
    }
    case 'load': {
      const { values: v, positionals } = parse({ input: { type: 'string', short: 'i' }, quiet: { type: 'boolean', short: 'q' } });
      if (help(v)) return;
      count(positionals, 0, 0, 'no arguments (the archive is -i FILE or stdin)');
      const input = v.input ?? '-';
      if (input === '-' && process.stdin.isTTY) throw new UsageError('requested load from stdin, but stdin is a terminal: use -i FILE or redirect stdin');
      const { load } = await import('../client/archive.js');
      const loaded = await load({ input, root: v.root, signal, onWait: (m) => process.stderr.write(`${m}\n`) });
      if (v.quiet) return;
      for (const image of loaded) {
        if (image.names.length === 0) out(`Loaded image ID: ${image.id}\n`);
        for (const name of image.names) out(`Loaded image: ${parseReference(name).familiarString}\n`);
      }
      return;
    }
    case 'import': {
      const { values: v, positionals } = parse({ message: { type: 'string', short: 'm' }, change: { type: 'string', short: 'c', multiple: true } });
      if (help(v)) return;
      count(positionals, 1, 2, 'a FILE, DIR or -, and optionally REPOSITORY[:TAG]');
      const { importImage } = await import('../client/archive.js');
      const image = await importImage({ source: positionals[0]!, name: positionals[1], message: v.message, changes: v.change, root: v.root, onWait: (m) => process.stderr.write(`${m}\n`) });
      return void out(`${image.id}\n`);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** The image as `docker image inspect` shows it, plus its manifest. */
function dockerInspect(i: LocalImage & { names: string[] }): Record<string, unknown> {
  return {
    Id: i.id,
    RepoTags: i.names.map((n) => parseReference(n).familiarString),
    Created: i.config.created,
    Author: i.config.author ?? '',
    Config: i.config.config ?? {},
    Architecture: i.config.architecture,
    ...(i.config.variant ? { Variant: i.config.variant } : {}),
    Os: i.config.os,
    Size: i.size,
    RootFS: { Type: 'layers', Layers: i.config.rootfs.diff_ids },
    History: i.config.history ?? [],
    Descriptor: i.manifestDescriptor,
    Manifest: i.manifest,
  };
}

function ago(created: string | undefined): string {
  const t = created ? Date.parse(created) : NaN;
  return Number.isNaN(t) ? 'N/A' : `${humanDuration(Date.now() - t)} ago`;
}
