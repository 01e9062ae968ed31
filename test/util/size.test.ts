// Sizes and durations as Docker's flags read them (`--keep-storage 5GB`, `--filter until=2h30m`).

import { expect, it } from 'vitest';
import { humanSize, parseDuration, parseSize } from '../../src/util/size.js';

it('reads sizes with binary multiples, as docker --keep-storage does', () => {
  expect(parseSize('0')).toBe(0);
  expect(parseSize('512')).toBe(512);
  expect(parseSize('64m')).toBe(64 * 1024 ** 2);
  expect(parseSize('5GB')).toBe(5 * 1024 ** 3);
  expect(parseSize('1.5g')).toBe(1.5 * 1024 ** 3);
  expect(parseSize('2MiB')).toBe(2 * 1024 ** 2);
  expect(() => parseSize('lots')).toThrow('invalid value for size: "lots"');
  expect(() => parseSize('-1g')).toThrow(/invalid value for size/);
});

it('reads Go durations, in milliseconds', () => {
  expect(parseDuration('24h')).toBe(24 * 3_600_000);
  expect(parseDuration('2h30m')).toBe(2.5 * 3_600_000);
  expect(parseDuration('90s')).toBe(90_000);
  expect(parseDuration('1.5h')).toBe(5_400_000);
  expect(parseDuration('500ms')).toBe(500);
  for (const bad of ['', '24', '1d', 'h', '2h junk']) expect(() => parseDuration(bad), bad).toThrow(/invalid duration/);
});

it('prints sizes as docker does: decimal units, three significant digits', () => {
  expect(humanSize(0)).toBe('0B');
  expect(humanSize(999)).toBe('999B');
  expect(humanSize(20270)).toBe('20.3kB');
  expect(humanSize(5 * 1024 ** 3)).toBe('5.37GB');
});
