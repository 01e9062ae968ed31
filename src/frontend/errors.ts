// Errors that point at a place in a Dockerfile. The message always starts with `file:line:` so a
// user (or an editor) can jump to it; format() adds the offending source lines.

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
    super(`${where}: ${reason}`, options);
    this.reason = reason;
    this.file = location.file;
    this.line = location.line;
    this.endLine = Math.max(location.endLine ?? location.line, location.line);
    this.column = location.column;
    const src = location.source ?? [];
    this.source = typeof src === 'string' ? src.split('\n') : [...src];
  }

  /** A printable, multi-line description: the message, then the numbered source lines. */
  format(): string {
    const out = [this.message];
    if (this.source.length > 0 && this.line > 0) {
      const width = String(this.line + this.source.length - 1).length;
      this.source.forEach((text, i) => {
        out.push(`  ${String(this.line + i).padStart(width)} | ${clip(text, 500)}`);
      });
      if (this.column !== undefined && this.source.length === 1) {
        out.push(`  ${' '.repeat(width)} | ${' '.repeat(Math.max(0, this.column - 1))}^`);
      }
    }
    return out.join('\n');
  }
}

/** Text shortened for a message: a hostile file can hold a word of megabytes. */
export function clip(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}

export function isDockerfileError(err: unknown): err is DockerfileError {
  return err instanceof DockerfileError;
}
