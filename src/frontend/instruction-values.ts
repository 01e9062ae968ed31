// Values of metadata instructions that have a syntax of their own (BuildKit checks them while
// dispatching): `--chown` specs, STOPSIGNAL signals, EXPOSE port specs.

import type { Chown } from '../definition/index.js';

/** `--chown=user[:group]`: names or ids, as written. */
export function parseChown(spec: string): Chown {
  const colon = spec.indexOf(':');
  return colon < 0 ? { user: spec } : { user: spec.slice(0, colon), group: spec.slice(colon + 1) };
}

const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL',
  'PROF', 'PWR', 'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1',
  'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ', 'RTMIN', 'RTMAX',
  ...Array.from({ length: 15 }, (_, i) => `RTMIN+${i + 1}`),
  ...Array.from({ length: 14 }, (_, i) => `RTMAX-${i + 1}`),
]);

/** STOPSIGNAL: a signal number or name (`SIGTERM`, `TERM`, `RTMIN+3`), as moby's ParseSignal accepts. */
export function isValidSignal(sig: string): boolean {
  if (/^[-+]?\d+$/.test(sig)) return Number(sig) !== 0;
  return SIGNALS.has(sig.toUpperCase().replace(/^SIG/, ''));
}

/** EXPOSE port specs (`80`, `80/udp`, `8000-8010/tcp`; host parts ignored) → `port/proto` keys. */
export function parsePortSpec(raw: string): string[] {
  const parts = raw.split(':');
  const container = parts[parts.length - 1] as string;
  const slash = container.indexOf('/');
  const port = slash < 0 ? container : container.slice(0, slash);
  const proto = slash < 0 ? 'tcp' : container.slice(slash + 1).toLowerCase() || 'tcp';
  if (port === '') throw new Error(`no port specified: ${raw}<empty>`);
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new Error(`invalid proto: ${proto}`);
  const range = /^(\d+)(?:-(\d+))?$/.exec(port);
  const start = Number(range?.[1]);
  const end = range?.[2] === undefined ? start : Number(range[2]);
  if (!range || start > 65535 || end > 65535 || end < start) throw new Error(`invalid containerPort: ${port}`);
  return Array.from({ length: end - start + 1 }, (_, i) => `${start + i}/${proto}`);
}
