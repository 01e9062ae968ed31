// Turns the bench's raw figures into what it prints and writes: per-tool summaries (median,
// min–max, noise), builder/peer ratios, a Markdown table and an SVG bar chart. Pure functions of
// the result object, so they can be tested without running anything.

export const PEER_LABELS = { buildkit: 'BuildKit', buildah: 'buildah', skopeo: 'skopeo copy' };

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs) {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Median, min, max and noise ((max − min) / median: 0.1 means the runs spread over 10 %). */
export function summarize(values) {
  const m = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { median: m, min, max, noise: m > 0 ? (max - min) / m : 0 };
}

/** builder's median over the peer's: below 1 builder is faster. */
export function ratio(builder, peer) {
  return builder && peer && peer.median > 0 ? builder.median / peer.median : undefined;
}

const seconds = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
const spread = (s) => (s.min === s.max ? seconds(s.median) : `${seconds(s.median)} (${seconds(s.min)}–${seconds(s.max)})`);
const times = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);

/** One cell per tool: its time, or why it has none. */
function cell(tool) {
  if (!tool) return '–';
  if (tool.error) return `failed: ${tool.error.split('\n')[0].slice(0, 80)}`;
  return spread(tool);
}

function hitsCell(scenario, tools) {
  const parts = tools
    .map((t) => [t, scenario.tools[t]?.hits])
    .filter(([, h]) => h && h.steps > 0)
    .map(([t, h]) => `${t === 'builder' ? 'builder' : PEER_LABELS[t]} ${h.cached}/${h.steps}`);
  return parts.join(', ') || '–';
}

/** The Markdown table of `result` (see run.mjs for its shape), with one time and ratio column per peer. */
export function markdownTable(result) {
  const peers = result.peers.filter((p) => result.scenarios.some((s) => s.tools[p]));
  const head = ['scenario', 'builder', ...peers.flatMap((p) => [PEER_LABELS[p], `builder / ${PEER_LABELS[p]}`]), 'goal', 'steps cached', 'builder peak RSS', 'noise'];
  const rows = result.scenarios.map((s) => {
    const noise = Math.max(...Object.values(s.tools).map((t) => t.noise ?? 0));
    const goal = s.goal === undefined ? '' : `≤ ${s.goal}×${s.ratios.buildkit === undefined ? '' : s.ratios.buildkit <= s.goal ? ' met' : ' not met'}`;
    const rss = s.tools.builder?.peakRssMB === undefined ? '–' : `${Math.round(s.tools.builder.peakRssMB)} MB`;
    return [s.title, cell(s.tools.builder), ...peers.flatMap((p) => [cell(s.tools[p]), times(s.ratios[p])]), goal, hitsCell(s, ['builder', ...peers]), rss, `${Math.round(noise * 100)} %`];
  });
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * The instruction-ordering lesson in one line: per tool, the time after a source edit with the
 * install before `COPY . .` as a share of the time with it after (undefined without both rows).
 */
export function orderingLesson(result) {
  const bad = result.scenarios.find((s) => s.name === 'order-copy-all-first');
  const good = result.scenarios.find((s) => s.name === 'order-package-json-first');
  if (!bad || !good) return undefined;
  const shares = Object.keys(good.tools)
    .filter((t) => good.tools[t].median !== undefined && bad.tools[t]?.median !== undefined)
    .map((t) => `${t === 'builder' ? 'builder' : PEER_LABELS[t]} ${Math.round((good.tools[t].median / bad.tools[t].median) * 100)} %`);
  if (shares.length === 0) return undefined;
  return `Instruction order: after a source edit, copying package.json and installing before \`COPY . .\` takes this share of the time of installing after it: ${shares.join(', ')}.`;
}

const escapeXml = (s) => String(s).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]);
const COLORS = { buildkit: '#2f6db5', buildah: '#c7702a', skopeo: '#4a9c5d' };

/**
 * A horizontal bar chart: one group per scenario, one bar per peer (builder's time over the
 * peer's), a dashed line at 1.0 (same time) and a tick at each scenario's goal. Scenarios without
 * a peer figure are listed with "no peer".
 */
export function svgChart(result) {
  const peers = result.peers.filter((p) => result.scenarios.some((s) => s.ratios[p] !== undefined));
  const bar = 14;
  const gap = 10;
  const label = (title) => (title.length > 64 ? `${title.slice(0, 62)}…` : title);
  // About 6.6 px per character of 12 px sans-serif.
  const labelWidth = 20 + Math.ceil(Math.max(...result.scenarios.map((s) => label(s.title).length)) * 6.6);
  const plotWidth = 460;
  const top = 50;
  const groupHeight = Math.max(1, peers.length) * bar + gap;
  const height = top + result.scenarios.length * groupHeight + 40;
  const all = result.scenarios.flatMap((s) => [...peers.map((p) => s.ratios[p] ?? 0), s.goal ?? 0]);
  const maxRatio = Math.max(2, Math.ceil(Math.max(...all) * 2) / 2);
  const x = (r) => labelWidth + (Math.min(r, maxRatio) / maxRatio) * plotWidth;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + 60}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="10" y="20" font-size="14" font-weight="bold">builder's time / peer's time (medians of interleaved runs): below 1.0 builder is faster</text>`,
  ];
  peers.forEach((p, i) => {
    const lx = 10 + i * 120;
    out.push(`<rect x="${lx}" y="30" width="12" height="12" fill="${COLORS[p] ?? '#777'}"/>`, `<text x="${lx + 16}" y="40">vs ${escapeXml(PEER_LABELS[p] ?? p)}</text>`);
  });
  const legendX = 10 + peers.length * 120;
  if (result.scenarios.some((s) => s.goal !== undefined)) out.push(`<line x1="${legendX + 6}" x2="${legendX + 6}" y1="29" y2="43" stroke="black" stroke-width="2"/>`, `<text x="${legendX + 16}" y="40">goal (vs BuildKit)</text>`);
  // Bars first, goal ticks over them, the figures last (with a white halo) so nothing hides them.
  const ticks = [];
  const figures = [];
  result.scenarios.forEach((s, i) => {
    const y = top + i * groupHeight;
    out.push(`<text x="${labelWidth - 8}" y="${y + (groupHeight - gap) / 2 + 4}" text-anchor="end">${escapeXml(label(s.title))}</text>`);
    if (peers.every((p) => s.ratios[p] === undefined)) {
      out.push(`<text x="${labelWidth + 4}" y="${y + bar - 3}" fill="#777">no peer</text>`);
    }
    peers.forEach((p, j) => {
      const r = s.ratios[p];
      if (r === undefined) return;
      const by = y + j * bar;
      out.push(`<rect x="${labelWidth}" y="${by}" width="${(x(r) - labelWidth).toFixed(1)}" height="${bar - 2}" fill="${COLORS[p] ?? '#777'}"/>`);
      figures.push(`<text x="${(x(r) + 4).toFixed(1)}" y="${by + bar - 4}" stroke="white" stroke-width="3" paint-order="stroke">${r.toFixed(2)}×</text>`);
    });
    if (s.goal !== undefined) {
      ticks.push(`<line x1="${x(s.goal).toFixed(1)}" x2="${x(s.goal).toFixed(1)}" y1="${y - 2}" y2="${y + groupHeight - gap + 2}" stroke="black" stroke-width="2"/>`);
    }
  });
  out.push(...ticks, ...figures);
  const bottom = top + result.scenarios.length * groupHeight;
  out.push(
    `<line x1="${x(1)}" x2="${x(1)}" y1="${top - 6}" y2="${bottom}" stroke="#c00" stroke-dasharray="4 3"/>`,
    `<line x1="${labelWidth}" x2="${labelWidth + plotWidth}" y1="${bottom}" y2="${bottom}" stroke="black"/>`,
  );
  for (let t = 0; t <= maxRatio; t += 0.5) {
    out.push(`<text x="${x(t)}" y="${bottom + 16}" text-anchor="middle"${t === 1 ? ' fill="#c00"' : ''}>${t.toFixed(1)}</text>`);
  }
  out.push(`<text x="${labelWidth + plotWidth / 2}" y="${bottom + 32}" text-anchor="middle">builder / peer (1.0: same time)</text>`, '</svg>');
  return `${out.join('\n')}\n`;
}
