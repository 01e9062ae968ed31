// Dockerfile text → instructions with source lines. Follows BuildKit's parser
// (frontend/dockerfile/parser): parser directives, comments, line continuations, `--flags`,
// JSON (exec) form versus shell form. Nothing is interpreted here beyond syntax: variable
// expansion and the meaning of each instruction belong to the compiler.

import { DockerfileError } from './errors.js';
import { ShellLex } from './shell-lexer.js';

export type EscapeChar = '\\' | '`';

export interface InstructionFlag {
  /** Without the leading `--`. */
  name: string;
  /** Undefined for a bare `--flag` (a boolean flag). */
  value?: string;
}

/**
 * A here-document attached to an instruction (`RUN <<EOF`, `COPY <<a.txt /dest/`), as BuildKit's
 * parser.Heredoc: `content` is the raw text between the marker line and the terminator, with
 * line endings, and without leading-tab stripping (apply chompHeredoc() when `chomp`).
 */
export interface Heredoc {
  /** The delimiter word with quotes removed (`EOF`, `a.txt`). */
  name: string;
  content: string;
  /** False when any part of the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no variable expansion. */
  expand: boolean;
  /** `<<-EOF`: leading tabs are stripped from the content and the terminator line. */
  chomp: boolean;
  /** The `3` of `3<<EOF`; 0 when absent. */
  fileDescriptor: number;
  /** First and last line of the body (the terminator line is `endLine + 1`). */
  startLine: number;
  endLine: number;
}

/** Instructions whose arguments may hold here-documents (BuildKit's heredocDirectives). */
export const HEREDOC_INSTRUCTIONS: ReadonlySet<string> = new Set(['ADD', 'COPY', 'RUN']);

// Blanks may follow `<<` (BuildKit since 2025): `<<  EOF`, and `<< -EOF` names `-EOF`.
const HEREDOC_RE = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

/** BuildKit's ChompHeredocContent: removes leading tabs from every line. */
export function chompHeredoc(content: string): string {
  return content.replace(/^\t+/gm, '');
}

/**
 * Parses one word as a heredoc marker (`<<EOF`, `<<-"EOF"`, `2<<EOF`); undefined when it is not
 * one. Mirrors BuildKit's ParseHeredoc, including how quoting turns expansion off.
 */
export function parseHeredocMarker(word: string): Omit<Heredoc, 'content' | 'startLine' | 'endLine'> | undefined {
  const m = HEREDOC_RE.exec(word);
  if (!m) return undefined;
  const rest = m[3] ?? '';
  if (rest === '') return undefined;
  const lex = new ShellLex('\\', { skipUnsetEnv: true });
  const words = lex.processWords(rest, new Map());
  if (words.length !== 1) return undefined;
  const raw = lex.with({ rawQuotes: true }).processWords(rest, new Map());
  if (raw.length !== 1) throw new Error(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  const name = words[0] as string;
  return { name, expand: quotes(name) === quotes(raw[0] as string), chomp: m[2] === '-', fileDescriptor: Number(m[1] || '0') };
}

/** The heredoc markers of a logical line, in order (BuildKit's heredocsFromLine). */
export function heredocMarkers(line: string): Array<Omit<Heredoc, 'content' | 'startLine' | 'endLine'>> {
  let words: string[];
  try {
    words = new ShellLex('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).processWords(line, new Map());
  } catch {
    return [];
  }
  return words.flatMap((w) => {
    const h = parseHeredocMarker(w);
    return h ? [h] : [];
  });
}

export interface Instruction {
  /** Upper-case, as Docker matches instruction names case-insensitively. */
  keyword: string;
  flags: InstructionFlag[];
  /** The raw rest of the instruction after the keyword and its flags, trimmed. */
  args: string;
  /**
   * The exec-form arguments when `args` is a JSON array of strings (for HEALTHCHECK, the command
   * after `CMD`). Absent for shell form, including text that merely looks like JSON.
   */
  json?: string[];
  /** For ONBUILD: the trigger instruction, parsed with the same rules. */
  trigger?: Instruction;
  /** Here-documents of RUN, COPY and ADD in shell form, in the order their markers appear. */
  heredocs?: Heredoc[];
  startLine: number;
  endLine: number;
  /** The instruction as one line: continuations joined, comment lines removed. */
  original: string;
}

export interface ParseWarning {
  line: number;
  message: string;
  /** The lint rule it reports (`NoEmptyContinuation`). */
  rule: string;
}

export interface Dockerfile {
  /** Parser directives, names lower-cased (`syntax`, `escape`, `check`). */
  directives: Record<string, string>;
  instructions: Instruction[];
  // The fields below are always set by parseDockerfile; other producers may leave them out.
  /** The escape character in effect (the `escape` directive's, else `\`). */
  escape?: EscapeChar;
  /** The file name used in errors. */
  file?: string;
  /** The source split into lines, to quote in errors. */
  lines?: string[];
  warnings?: ParseWarning[];
}

export const KNOWN_INSTRUCTIONS: readonly string[] = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
];

/** Instructions whose arguments may be a JSON array (BuildKit's parseMaybeJSON / …ToList). */
const JSON_FORM = new Set(['ADD', 'COPY', 'CMD', 'ENTRYPOINT', 'RUN', 'SHELL', 'VOLUME']);

const VALID_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
// The value is trimmed afterwards: a lazy `(.+?)\s*$` would make a long line quadratic.
const DIRECTIVE_RE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(\S.*)$/;
const KEYWORD_SPLIT_RE = /[\t\v\f\r ]+/;

export function isSpace(ch: string): boolean {
  return /^[\s\u0085]$/u.test(ch);
}

function trimLeftSpace(s: string): string {
  return s.replace(/^[\s\u0085]+/u, '');
}

function isCommentLine(raw: string): boolean {
  return trimLeftSpace(raw).startsWith('#');
}

/**
 * BuildKit reads the file with a bufio.Scanner whose buffer holds 64 KiB: a line of more than
 * 65535 bytes (a `\r` before the newline counts, the newline does not) fails the build.
 */
const MAX_LINE_BYTES = 65535;

/**
 * Splits like Go's bufio.ScanLines: `\n` separated, a trailing `\r` dropped, no empty last line.
 * A line longer than BuildKit's scanner reads is an error.
 */
function splitLines(text: string, file: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (text.endsWith('\n')) lines.pop();
  return lines.map((l, i) => {
    // A UTF-16 unit is at most 3 UTF-8 bytes: only long lines need counting.
    if (l.length > MAX_LINE_BYTES / 3 && Buffer.byteLength(l) > MAX_LINE_BYTES) {
      throw new DockerfileError(
        `dockerfile line greater than max allowed size of ${MAX_LINE_BYTES} (this line has ${Buffer.byteLength(l)} bytes; split the instruction over several lines with line continuations)`,
        { file, line: i + 1, source: l },
      );
    }
    return l.endsWith('\r') ? l.slice(0, -1) : l;
  });
}

/** Parser directives are only recognised in the comment lines at the very top of the file. */
class DirectiveState {
  escape: EscapeChar = '\\';
  readonly values: Record<string, string> = {};
  private done = false;

  constructor(private readonly file: string) {}

  consider(trimmedLine: string, lineNo: number, raw: string): void {
    if (this.done) return;
    const m = DIRECTIVE_RE.exec(trimmedLine);
    const key = m?.[1]?.toLowerCase();
    if (!m || key === undefined || !VALID_DIRECTIVES.has(key)) {
      this.done = true;
      return;
    }
    const value = (m[2] ?? '').trimEnd();
    if (Object.hasOwn(this.values, key)) {
      throw new DockerfileError(`only one ${key} parser directive can be used`, { file: this.file, line: lineNo, source: raw });
    }
    if (key === 'escape') {
      if (value !== '\\' && value !== '`') {
        throw new DockerfileError(`invalid escape token '${value}' does not match \` or \\`, { file: this.file, line: lineNo, source: raw });
      }
      this.escape = value;
    }
    this.values[key] = value;
  }

  /**
   * `\` (or the escape directive's character) followed only by blanks continues the line, unless
   * another escape precedes it: `a\\` ends with an escaped escape. As BuildKit's regular
   * expression, `a\\\` (escaped escape, then a continuation) does not continue either.
   */
  trimContinuation(line: string): { text: string; continues: boolean } {
    const re = this.escape === '`' ? /(^|[^`])`[ \t]*$/ : /(^|[^\\])\\[ \t]*$/;
    return re.test(line) ? { text: line.replace(re, '$1'), continues: true } : { text: line, continues: false };
  }
}

export function parseDockerfile(text: string, file = 'Dockerfile'): Dockerfile {
  const lines = splitLines(text, file);
  const endsWithNewline = text.endsWith('\n');
  if (lines.length > 0) lines[0] = (lines[0] as string).replace(/^\uFEFF/, '');
  const state = new DirectiveState(file);
  const instructions: Instruction[] = [];
  const warnings: ParseWarning[] = [];

  let idx = 0;
  while (idx < lines.length) {
    const raw = lines[idx++] as string;
    const startLine = idx;
    const trimmed = trimLeftSpace(raw);
    state.consider(trimmed, startLine, raw);
    let { text: line, continues } = state.trimContinuation(trimmed.startsWith('#') ? '' : trimmed);
    if (!continues && line === '') continue;

    // Docker skips comment lines and blank lines inside a continued instruction.
    let sawEmptyLine = false;
    while (continues && idx < lines.length) {
      const next = lines[idx++] as string;
      if (isCommentLine(next)) continue;
      if (trimLeftSpace(next) === '') {
        sawEmptyLine = true;
        continue;
      }
      const part = state.trimContinuation(next);
      line += part.text;
      continues = part.continues;
    }
    let endLine = idx;
    if (sawEmptyLine) {
      warnings.push({
        line: startLine,
        message: 'empty continuation line (Docker will make these an error in a future release)',
        rule: 'NoEmptyContinuation',
      });
    }
    const location = { file, startLine, endLine, source: lines.slice(startLine - 1, endLine) };
    const instruction = parseInstructionLine(line, state.escape, location);
    if (!instruction) continue;
    if (HEREDOC_INSTRUCTIONS.has(instruction.keyword) && !instruction.json && line.includes('<<')) {
      const heredocs: Heredoc[] = [];
      let markers: ReturnType<typeof heredocMarkers>;
      try {
        markers = heredocMarkers(line);
      } catch (err) {
        // BuildKit's ParseHeredoc fails the same way on a marker such as <<EOF" (unbalanced quote).
        throw new DockerfileError(`${instruction.keyword}: ${(err as Error).message}`, { file, line: startLine, endLine, source: location.source }, { cause: err });
      }
      for (const marker of markers) {
        const bodyStart = idx + 1;
        let content = '';
        let terminated = false;
        while (idx < lines.length) {
          const next = lines[idx++] as string;
          const candidate = marker.chomp ? next.replace(/^\t+/, '') : next;
          if (candidate === marker.name) {
            terminated = true;
            break;
          }
          content += idx < lines.length || endsWithNewline ? `${next}\n` : next;
        }
        if (!terminated) {
          throw new DockerfileError(
            `unterminated heredoc: no line reading "${marker.name}" closes the <<${marker.chomp ? '-' : ''}${marker.name} started here`,
            { file, line: startLine, endLine: idx, source: lines.slice(startLine - 1, Math.min(idx, startLine + 4)) },
          );
        }
        heredocs.push({ ...marker, content, startLine: bodyStart, endLine: idx - 1 });
      }
      if (heredocs.length > 0) {
        instruction.heredocs = heredocs;
        instruction.endLine = idx;
        endLine = idx;
      }
    }
    instructions.push(instruction);
  }

  if (instructions.length === 0) {
    throw new DockerfileError('the file has no instructions', { file, line: 0 });
  }
  return { directives: { ...state.values }, instructions, escape: state.escape, file, lines, warnings };
}

interface LineLocation {
  file: string;
  startLine: number;
  endLine: number;
  source: string[];
}

/** Parses one logical line (`KEYWORD [--flags] args`); undefined for a line with no keyword. */
export function parseInstructionLine(line: string, escape: EscapeChar, loc: LineLocation, nested = false): Instruction | undefined {
  const trimmed = line.trim();
  if (trimmed === '') return undefined;
  const m = KEYWORD_SPLIT_RE.exec(trimmed);
  const keywordRaw = m ? trimmed.slice(0, m.index) : trimmed;
  const restRaw = m ? trimmed.slice(m.index + m[0].length) : '';
  const keyword = keywordRaw.toUpperCase();
  const { rest, flags } = extractFlags(restRaw, escape);
  const args = rest.trim();
  const instruction: Instruction = { keyword, flags, args, startLine: loc.startLine, endLine: loc.endLine, original: trimmed };

  const jsonSource = keyword === 'HEALTHCHECK' ? healthcheckCommand(args) : JSON_FORM.has(keyword) ? args : undefined;
  if (jsonSource !== undefined) {
    const json = parseJsonArray(jsonSource, keyword, loc);
    if (json) instruction.json = json;
  }
  // One level only: `ONBUILD ONBUILD …` is refused later, and recursing once per word of a
  // hostile line would overflow the stack.
  if (keyword === 'ONBUILD' && !nested) {
    const trigger = parseInstructionLine(args, escape, loc, true);
    if (trigger) instruction.trigger = trigger;
  }
  return instruction;
}

/** HEALTHCHECK's first word is the type (CMD / NONE); the command after it may be JSON. */
function healthcheckCommand(args: string): string {
  const m = /\s+/u.exec(args);
  return m ? args.slice(m.index + m[0].length) : '';
}

/**
 * A JSON array of strings, or undefined when the text is not valid JSON (then it is shell form,
 * as in Docker). A valid JSON array holding non-strings is an error, also as in Docker.
 */
function parseJsonArray(text: string, keyword: string, loc: LineLocation): string[] | undefined {
  const t = trimLeftSpace(text);
  if (!t.startsWith('[')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  if (!value.every((v): v is string => typeof v === 'string')) {
    throw new DockerfileError(`${keyword}: when using JSON array syntax, arrays must be comprised of strings only`, {
      file: loc.file,
      line: loc.startLine,
      endLine: loc.endLine,
      source: loc.source,
    });
  }
  return value;
}

// States of the small word scanners below.
const Phase = { Spaces: 0, Word: 1, Quote: 2 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/**
 * Pulls leading `--name[=value]` words off an instruction's arguments (BuildKit's
 * extractBuilderFlags). Quotes inside a flag are removed and the escape character (`\`, or the
 * `escape` directive's) escapes the next one; a bare `--` ends the flags.
 */
function extractFlags(line: string, escape: EscapeChar): { rest: string; flags: InstructionFlag[] } {
  const words: string[] = [];
  let phase: Phase = Phase.Spaces;
  let word = '';
  let quote = '';
  let blankOK = false;
  const done = (rest: string) => ({ rest, flags: words.map(toFlag) });

  for (let pos = 0; pos <= line.length; pos++) {
    let ch = line[pos] ?? '';
    if (phase === Phase.Spaces) {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      if (ch !== '-' || line[pos + 1] !== '-') return done(line.slice(pos));
      phase = Phase.Word;
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isSpace(ch)) {
        phase = Phase.Spaces;
        if (word === '--') return done(line.slice(pos));
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
        continue;
      }
      if (ch === escape) {
        if (pos + 1 === line.length) continue;
        ch = line[++pos] ?? '';
      }
      word += ch;
      continue;
    }
    // Phase.Quote
    if (ch === quote) {
      phase = Phase.Word;
      continue;
    }
    if (ch === escape) {
      if (pos + 1 === line.length) {
        phase = Phase.Word;
        continue;
      }
      ch = line[++pos] ?? '';
    }
    word += ch;
  }
  return done('');
}

function toFlag(word: string): InstructionFlag {
  const body = word.startsWith('--') ? word.slice(2) : word;
  const eq = body.indexOf('=');
  return eq < 0 ? { name: body } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
}

/**
 * Splits arguments into words on unquoted whitespace, keeping quotes and escapes in the words
 * (they are removed later by variable expansion). Used by ENV, LABEL and ARG, as in BuildKit.
 */
export function parseWords(rest: string, escape: string): string[] {
  const chars = Array.from(rest);
  const words: string[] = [];
  let phase: Phase = Phase.Spaces;
  let quote = '';
  let blankOK = false;
  let word = '';

  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos] ?? '';
    if (phase === Phase.Spaces) {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      phase = Phase.Word;
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === Phase.Word) {
      if (isSpace(ch)) {
        phase = Phase.Spaces;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = Phase.Quote;
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue; // an escape at the end is dropped
        // Outside quotes the escape and the escaped character are both kept, even a quote.
        word += ch;
        ch = chars[++pos] ?? '';
      }
      word += ch;
      continue;
    }
    // Phase.Quote
    if (ch === quote) phase = Phase.Word;
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = Phase.Word;
        continue;
      }
      word += ch;
      ch = chars[++pos] ?? '';
    }
    word += ch;
  }
  return words;
}

/** Splits on runs of blanks, as BuildKit's parseStringsWhitespaceDelimited (no quote handling). */
export function splitWhitespace(rest: string): string[] {
  return rest.split(/[\t\v\f\r ]+/).filter((w) => w !== '');
}
