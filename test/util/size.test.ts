// Sizes and durations as Docker's flags read them (`--keep-storage 5GB`, `--filter until=2h30m`).

import { describe, expect, it } from 'vitest';
import { humanDuration, humanSize, parseDuration, parseSize } from '../../src/util/size.js';

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

describe('humanDuration (ages as docker images and docker history print them)', () => {
  it.each([
    [500, 'Less than a second'],
    [1_000, '1 second'],
    [59_000, '59 seconds'],
    [90_000, 'About a minute'],
    [45 * 60_000, '45 minutes'],
    [89 * 60_000, 'About an hour'],
    [90 * 60_000, '2 hours'],
    [47 * 3_600_000, '47 hours'],
    [3 * 86_400_000, '3 days'],
    [20 * 86_400_000, '2 weeks'],
    [100 * 86_400_000, '3 months'],
    [3 * 365 * 86_400_000, '3 years'],
  ])('%d ms → %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});
