// The bench's pure parts: statistics, the Markdown table, the SVG chart and the scenario list.
// Nothing here runs a build; `npm run bench -- --quick` is the smoke test of the rest.

import { describe, expect, it } from 'vitest';
import { markdownTable, median, ratio, summarize, svgChart } from '../../bench/lib/report.mjs';
import { scenarios, selectScenarios } from '../../bench/scenarios/index.mjs';

const result = {
  runs: 5,
  peers: ['buildkit', 'buildah'],
  scenarios: [
    {
      name: 'a',
      title: 'copy <big> & edit',
      goal: 0.5,
      tools: {
        builder: { ...summarize([300, 320, 400]), hits: { cached: 2, steps: 3 }, peakRssMB: 91.6 },
        buildkit: { ...summarize([200, 200, 210]), hits: { cached: 1, steps: 3 } },
        buildah: { error: 'buildah: exit 125\nmore' },
      },
      ratios: { buildkit: 1.6 },
    },
    { name: 'b', title: 'builder only', tools: { builder: summarize([1000, 1200]) }, ratios: {} },
  ],
};

/** Every opened element is closed in order (a well-formedness check without an XML parser). */
function balanced(svg: string): boolean {
  const open: string[] = [];
  for (const [, close, name, selfClosing] of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (selfClosing) continue;
    if (!close) open.push(name!);
    else if (open.pop() !== name) return false;
  }
  return open.length === 0;
}

describe('bench statistics', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
  });

  it('gives min, max and the spread over the median as noise', () => {
    expect(summarize([100, 90, 120, 110, 100])).toEqual({ median: 100, min: 90, max: 120, noise: 0.3 });
  });

  it("divides builder's median by the peer's, and has no ratio without a peer figure", () => {
    expect(ratio(summarize([3, 3]), summarize([2, 2]))).toBe(1.5);
    expect(ratio(summarize([3]), undefined)).toBeUndefined();
  });
});

describe('bench report', () => {
  it('has a time and ratio column per peer, the goal verdict, hits, peak RSS and noise', () => {
    const [head, , first, second] = markdownTable(result).split('\n');
    expect(head).toBe('| scenario | builder | BuildKit | builder / BuildKit | buildah | builder / buildah | goal | steps cached | builder peak RSS | noise |');
    expect(first).toBe(
      '| copy <big> & edit | 320 ms (300 ms–400 ms) | 200 ms (200 ms–210 ms) | 1.60× | failed: buildah: exit 125 | – | ≤ 0.5× not met | builder 2/3, BuildKit 1/3 | 92 MB | 31 % |',
    );
    expect(second).toBe('| builder only | 1.10 s (1.00 s–1.20 s) | – | – | – | – |  | – | – | 18 % |');
  });

  it('draws a well-formed chart with one bar per peer ratio, the 1.0 line and escaped labels', () => {
    const svg = svgChart(result);
    expect(balanced(svg)).toBe(true);
    expect(svg).toContain('copy &lt;big&gt; &amp; edit');
    expect(svg).not.toContain('<big>');
    expect(svg.match(/<text[^>]*>1\.60×<\/text>/g)).toHaveLength(1);
    // buildah has no ratio anywhere: no legend entry and no bar for it.
    expect(svg).not.toContain('vs buildah');
    expect(svg).toContain('no peer');
    const one = /<text x="([\d.]+)"[^>]*fill="#c00">1\.0<\/text>/.exec(svg)?.[1];
    expect(svg).toContain(`<line x1="${one}" x2="${one}"`);
  });
});

describe('bench scenarios', () => {
  it('have unique names, a title and a plan each; the default set leaves the extra ones out', () => {
    const names = scenarios.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const s of scenarios) {
      expect(s.title).toBeTruthy();
      expect(typeof s.prepare).toBe('function');
    }
    expect(selectScenarios().map((s) => s.name)).toEqual(scenarios.filter((s) => !s.extra).map((s) => s.name));
    expect(selectScenarios(['all'])).toEqual(scenarios);
    expect(selectScenarios(['push', 'parallel-stages']).map((s) => s.name)).toEqual(['parallel-stages', 'push']);
    expect(() => selectScenarios(['nope'])).toThrow('unknown scenario nope');
  });

  it("cover every row of the issue's table with its goal", () => {
    const goals = Object.fromEntries(selectScenarios().map((s) => [s.name, s.goal]));
    expect(goals).toMatchObject({
      'parallel-stages': 1.1,
      'source-edit': 0.5,
      'source-noop': 0.5,
      'source-cold': 1.0,
      'base-pull': 1.0,
      'run-steps': 0.8,
      'two-stage-cold': 1.0,
      'two-stage-cached': 0.7,
    });
    expect(Object.keys(goals)).toEqual(expect.arrayContaining(['order-copy-all-first', 'order-package-json-first', 'push', 'remote-cache']));
  });
});
