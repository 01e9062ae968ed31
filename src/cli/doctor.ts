// `builder doctor`: prints what the integrity check found; exits 1 when it found anything.

import { parseArgs } from 'node:util';
import { UsageError } from './exit-codes.js';

const USAGE = `Usage: builder doctor [--root DIR]

Check the state directory: every image, manifest, config, cache record and layer must name
content that is there and whose bytes match its digest (every blob is hashed again); nothing may
be left of builds that did not finish (temporary files, snapshots, mounts, runc containers).
Exits 1 when it finds anything. Run it when no build is running.

Options:
      --root DIR            State directory (default: $BUILDER_ROOT, /var/lib/builder as root)
  -h, --help                Show this help
`;

export async function runDoctorCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { root: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`"builder doctor" takes no arguments (got ${positionals.join(' ')})`);
  const { doctor } = await import('../client/doctor.js');
  const report = await doctor({ root: values.root });
  const problems = report.issues.filter((i) => !i.leftover);
  const leftovers = report.issues.filter((i) => i.leftover);
  for (const i of problems) process.stdout.write(`problem: ${i.path}: ${i.message}\n`);
  for (const i of leftovers) process.stdout.write(`leftover: ${i.path}: ${i.message}\n`);
  const { blobs, images, cacheRecords, snapshots } = report.checked;
  const checked = `${blobs} blobs, ${images} images, ${cacheRecords} cache records, ${snapshots} snapshots`;
  if (report.issues.length === 0) {
    process.stdout.write(`${report.root}: no problems (checked ${checked})\n`);
    return 0;
  }
  const parts = [];
  if (problems.length) parts.push(`${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  if (leftovers.length) parts.push(`${leftovers.length} leftover${leftovers.length === 1 ? '' : 's'} of builds that did not finish (the next build removes them)`);
  process.stdout.write(`${report.root}: ${parts.join(', ')} (checked ${checked})\n`);
  return 1;
}
