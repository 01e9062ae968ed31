// The build's settings for every RUN step, as `docker build` takes them: `--add-host HOST:IP`,
// `--ulimit NAME=SOFT[:HARD]`, `--shm-size SIZE`. Parsed here (not in the CLI) so that the
// library checks what an embedder passes the same way.

import { isIP } from 'node:net';
import type { ExtraHost, Ulimit } from '../definition/index.js';
import type { RunSettings } from '../frontend/index.js';
import { parseSize } from '../util/size.js';

/** The limits `docker build --ulimit` knows (go-units' ulimitNameMapping). */
const ULIMIT_NAMES = ['core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'];

/** `HOST:IP` or `HOST=IP` (the address may be IPv6: the name ends at the first separator). */
export function parseAddHost(value: string): ExtraHost {
  const at = value.search(/[:=]/);
  if (at < 0) throw new Error(`invalid --add-host "${value}": expected HOST:IP`);
  return checkExtraHost({ host: value.slice(0, at), ip: value.slice(at + 1).replace(/^\[(.*)\]$/, '$1') }, `--add-host "${value}"`);
}

/** `NAME=SOFT[:HARD]`; without HARD both limits are SOFT. */
export function parseUlimit(value: string): Ulimit {
  const m = /^([a-z]+)=(\d+)(?::(\d+))?$/.exec(value);
  if (!m) throw new Error(`invalid --ulimit "${value}": expected NAME=SOFT[:HARD] with numbers, e.g. nofile=1024:2048`);
  return checkUlimit({ name: m[1]!, soft: Number(m[2]), hard: Number(m[3] ?? m[2]) }, `--ulimit "${value}"`);
}

/** `64m`, `1g`, bytes: Docker's sizes (binary multiples). */
export function parseShmSize(value: string): number {
  let bytes: number;
  try {
    bytes = parseSize(value);
  } catch (err) {
    throw new Error(`invalid --shm-size: ${(err as Error).message}`);
  }
  return checkShmSize(bytes, `--shm-size "${value}"`);
}

/** The settings as the frontend takes them, checked; a setting not given is left out (digests stay as they were). */
export function runSettings(opts: { extraHosts?: ExtraHost[]; ulimits?: Ulimit[]; shmSize?: number }): RunSettings | undefined {
  const settings: RunSettings = {};
  if (opts.extraHosts?.length) settings.extraHosts = opts.extraHosts.map((h) => checkExtraHost(h, `extra host ${JSON.stringify(h)}`));
  if (opts.ulimits?.length) {
    const names = new Set<string>();
    settings.ulimits = opts.ulimits.map((u) => {
      if (names.has(u.name)) throw new Error(`invalid --ulimit: "${u.name}" is given twice`);
      names.add(u.name);
      return checkUlimit(u, `--ulimit ${u.name}`);
    });
  }
  if (opts.shmSize !== undefined) settings.shmSize = checkShmSize(opts.shmSize, `--shm-size ${opts.shmSize}`);
  return Object.keys(settings).length > 0 ? settings : undefined;
}

function checkExtraHost(h: ExtraHost, what: string): ExtraHost {
  if (h.ip === 'host-gateway') throw new Error(`invalid ${what}: host-gateway is not supported (there is no daemon gateway); give an IP address`);
  if (!/^[A-Za-z0-9_.-]+$/.test(h.host)) throw new Error(`invalid ${what}: "${h.host}" is not a host name`);
  if (isIP(h.ip) === 0) throw new Error(`invalid ${what}: "${h.ip}" is not an IP address`);
  return { host: h.host, ip: h.ip };
}

function checkUlimit(u: Ulimit, what: string): Ulimit {
  if (!ULIMIT_NAMES.includes(u.name)) throw new Error(`invalid ${what}: unknown limit "${u.name}" (known: ${ULIMIT_NAMES.join(', ')})`);
  for (const n of [u.soft, u.hard]) if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid ${what}: limits must be whole numbers of 0 or more`);
  if (u.soft > u.hard) throw new Error(`invalid ${what}: the soft limit ${u.soft} is above the hard limit ${u.hard}`);
  return { name: u.name, soft: u.soft, hard: u.hard };
}

function checkShmSize(bytes: number, what: string): number {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid ${what}: the size must be more than 0 bytes`);
  return bytes;
}
