// How steps are named in progress, as BuildKit names its vertices: `[builder 2/5] RUN make`,
// the instruction as written (variables unexpanded, URL credentials masked, clipped when huge).

import { redactCredentials } from '../definition/index.js';
import { clipText } from './errors.js';
import type { Command } from './instructions.js';

export interface StageLabel {
  /** `builder`, `stage-2`, or '' when the Dockerfile has a single stage (as BuildKit prints it). */
  display: string;
  /** Steps that get a `[n/total]` number: the FROM of an image, then ADD, COPY, RUN, WORKDIR. */
  total: number;
}

/** Longest instruction text in a step name; the rest is elided. */
const MAX_DISPLAY_CHARS = 1024;

/** BuildKit's summarizeHeredoc: the first line, with `...` when more follow. */
export function summarizeHeredoc(doc: string): string {
  const text = doc.trim();
  const nl = text.indexOf('\n');
  return nl < 0 ? text : `${text.slice(0, nl).trimEnd()}...`;
}

function uppercaseKeyword(text: string): string {
  const space = text.indexOf(' ');
  return space < 0 ? text.toUpperCase() : text.slice(0, space).toUpperCase() + text.slice(space);
}

/**
 * The instruction as shown in progress: as written, keyword upper-cased. Variables stay
 * unexpanded (a build arg may hold a secret), URL credentials are masked, and a very long
 * instruction is clipped (it is echoed in progress and errors).
 */
export function displayText(cmd: Command, suffix = ''): string {
  return clipText(redactCredentials(uppercaseKeyword(cmd.instr.original) + suffix), MAX_DISPLAY_CHARS);
}

/** Numbers a stage's steps as BuildKit names progress vertices: `[builder 2/5] RUN …`. */
export class StepCounter {
  private step = 0;

  constructor(private readonly label: StageLabel) {}

  /** Steps are numbered in the order they are named. */
  name(text: string, onbuild = false): string {
    if (this.label.total === 0) return text;
    this.step++;
    const width = String(this.label.total).length;
    const prefix = this.label.display ? `${this.label.display} ` : '';
    return `[${prefix}${String(this.step).padStart(width)}/${this.label.total}] ${onbuild ? 'ONBUILD ' : ''}${text}`;
  }

  /** The last named step's stage and number, without the total (which moves when a step is added). */
  position(): string {
    return `${this.label.display}#${this.step}`;
  }
}
