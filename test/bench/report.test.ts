// The bench's pure parts: statistics, the Markdown table, the SVG chart and the scenario list.
// Nothing here runs a build; `npm run bench -- --quick` is the smoke test of the rest.

import { describe, expect, it } from 'vitest';
import { markdownTable, median, orderingLesson, ratio, summarize, svgChart } from '../../bench/lib/report.mjs';
import { scenarios, selectScenarios } from '../../bench/scenarios/index.mjs';
import { buildahHits, builderHits, buildkitHits } from '../../bench/lib/tools.mjs';

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
    // One run: no range to show; a peer with no figure in any scenario has no columns.
    expect(markdownTable({ ...result, scenarios: [{ ...result.scenarios[1]!, tools: { builder: summarize([1500]) } }] })).toContain('| builder only | 1.50 s |  | – | – | 0 % |');
  });

  it('states the instruction-ordering lesson per tool when both orders ran', () => {
    const order = (name: string, builder: number, buildkit: number) => ({ name, title: name, tools: { builder: summarize([builder]), buildkit: summarize([buildkit]) }, ratios: {} });
    const both = { ...result, scenarios: [order('order-copy-all-first', 4000, 3000), order('order-package-json-first', 1000, 1500)] };
    expect(orderingLesson(both)).toContain('builder 25 %, BuildKit 50 %.');
    expect(orderingLesson(result)).toBeUndefined();
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

describe('bench cache-hit counts', () => {
  // Two stages: WORKDIR and FROM are not counted (they make no layer of their own in every tool).
  it("count RUN, COPY and ADD steps and their hits in builder's JSON progress", () => {
    const events = [
      { type: 'step', id: 'v1', name: '[build 1/3] FROM 127.0.0.1:5000/bench/busybox:1', status: 'cached' },
      { type: 'step', id: 'v2', name: '[build 2/3] WORKDIR /src', status: 'cached' },
      { type: 'step', id: 'v3', name: '[build 3/3] COPY app.sh .', status: 'cached' },
      { type: 'step', id: 'v4', name: '[stage-1 2/2] RUN sh app.sh', status: 'started' },
      { type: 'log', id: 'v4', stream: 'stdout', data: 'RUN x\n' },
      { type: 'step', id: 'v4', name: '[stage-1 2/2] RUN sh app.sh', status: 'done' },
      { type: 'step', id: 'export', name: 'exporting to image', status: 'done' },
    ];
    expect(builderHits(`${events.map((e) => JSON.stringify(e)).join('\n')}\npeak-rss-kb 9000\n`)).toEqual({ steps: 2, cached: 1 });
  });

  it("count them from BuildKit's plain progress", () => {
    const plain = [
      '#5 [build 1/3] FROM 127.0.0.1:5000/bench/busybox:1@sha256:ab',
      '#6 [build 2/3] WORKDIR /src',
      '#6 CACHED',
      '#7 [build 3/3] COPY app.sh .',
      '#7 CACHED',
      '#8 [stage-1 2/2] RUN sh app.sh',
      '#8 0.210 line 1',
      '#8 DONE 0.3s',
      '#9 exporting to image',
    ].join('\n');
    expect(buildkitHits(plain)).toEqual({ steps: 2, cached: 1 });
  });

  it("count them from buildah's output, with or without a stage prefix", () => {
    const out = [
      '[1/2] STEP 1/3: FROM 127.0.0.1:5000/bench/busybox:1 AS build',
      '[1/2] STEP 2/3: COPY app.sh .',
      '--> Using cache 9ec3b15095782a2715513d0a8dc3e6544ddbfba1f088d03e734de0b922c10f06',
      '[1/2] STEP 3/3: RUN sh app.sh',
      'line 1',
      '--> 1f023f85a53',
      '[2/2] STEP 1/2: FROM 127.0.0.1:5000/bench/busybox:1',
      '[2/2] STEP 2/2: COPY --from=build /out.txt /out.txt',
      '--> 4b1e0d3c2a1',
    ].join('\n');
    expect(buildahHits(out)).toEqual({ steps: 3, cached: 1 });
    expect(buildahHits('STEP 1/2: FROM x\nSTEP 2/2: RUN true\n--> Using cache 1\n')).toEqual({ steps: 1, cached: 1 });
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
