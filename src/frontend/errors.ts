// Errors that point at a place in a Dockerfile. The message always starts with `file:line:` so a
// user (or an editor) can jump to it; format() adds the offending source lines. URL credentials
// in either are masked, and a huge instruction is shown clipped.

import { redactCredentials } from '../definition/index.js';

/** Source lines quoted by format(), and the characters shown of each. */
const MAX_SOURCE_LINES = 10;
const MAX_SOURCE_CHARS = 1024;

export interface ErrorLocation {
  file: string;
  /** 1-based; 0 when the error is about the file as a whole. */
  line: number;
  /** Last line of a multi-line instruction; defaults to `line`. */
  endLine?: number;
  /** 1-based column, when it helps. */
  column?: number;
  /** The offending source line(s), as written. */
  source?: string | string[];
}

export class DockerfileError extends Error {
  override readonly name = 'DockerfileError';
  readonly file: string;
  readonly line: number;
  readonly endLine: number;
  readonly column: number | undefined;
  readonly source: string[];
  /** The message without the `file:line:` prefix. */
  readonly reason: string;

  constructor(reason: string, location: ErrorLocation, options?: { cause?: unknown }) {
    const where = location.line > 0 ? `${location.file}:${location.line}` : location.file;
    super(`${where}: ${redactCredentials(reason)}`, options);
    this.reason = redactCredentials(reason);
    this.file = location.file;
    this.line = location.line;
    this.endLine = Math.max(location.endLine ?? location.line, location.line);
    this.column = location.column;
    const src = location.source ?? [];
    this.source = (typeof src === 'string' ? src.split('\n') : [...src]).map(redactCredentials);
  }

  /** A printable, multi-line description: the message, then the numbered source lines. */
  format(): string {
    const out = [this.message];
    if (this.source.length > 0 && this.line > 0) {
      const shown = this.source.slice(0, MAX_SOURCE_LINES);
      const width = String(this.line + shown.length - 1).length;
      shown.forEach((text, i) => {
        out.push(`  ${String(this.line + i).padStart(width)} | ${clipText(text, MAX_SOURCE_CHARS)}`);
      });
      const more = this.source.length - shown.length;
      if (more > 0) out.push(`  ${' '.repeat(width)} | [... ${more} more lines]`);
      if (this.column !== undefined && this.source.length === 1) {
        out.push(`  ${' '.repeat(width)} | ${' '.repeat(Math.max(0, this.column - 1))}^`);
      }
    }
    return out.join('\n');
  }
}

/** `text` cut to `max` characters, saying how much was left out. */
export function clipText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)} [... ${text.length - max} more characters]`;
}

/** The message of anything thrown, for wrapping it in an error that names the place. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isDockerfileError(err: unknown): err is DockerfileError {
  return err instanceof DockerfileError;
}
