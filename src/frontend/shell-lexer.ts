// Docker's shell-word lexer: quote removal, escapes and `$VAR` / `${VAR…}` expansion, with optional
// word splitting. A port of BuildKit's frontend/dockerfile/shell/lex.go, quirks included, because
// the Dockerfile language is defined by what that code does, not by POSIX sh.
//
// Over 500 lines on purpose: it keeps lex.go's shape (one scanner with its pattern helpers), so
// the two can be compared function by function when BuildKit changes.

/** Variables visible to an expansion: a Map, or a plain record of own properties. */
export type EnvSource = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

/** A variable lookup that can tell "unset" from "set to the empty string". */
export interface EnvLookup {
  get(name: string): string | undefined;
}

export function envLookup(env: EnvSource | EnvLookup): EnvLookup {
  // Record values are strings, so a callable `get` means a Map or another lookup object.
  if (typeof (env as EnvLookup).get === 'function') return env as EnvLookup;
  const record = env as Readonly<Record<string, string>>;
  return { get: (name) => (Object.hasOwn(record, name) ? record[name] : undefined) };
}

export class ShellExpansionError extends Error {
  override readonly name = 'ShellExpansionError';
}

/**
 * How much text variable substitution may produce, summed over every word expanded with it (one
 * compile shares one). Without a bound, `ARG B=$A$A`, `ARG C=$B$B` … doubles at each line and a
 * short file asks for gigabytes.
 */
export class ExpansionBudget {
  private used = 0;

  constructor(readonly limit: number = DEFAULT_EXPANSION_LIMIT) {}

  spend(chars: number): void {
    this.used += chars;
    if (this.used > this.limit) {
      throw new ShellExpansionError(
        `variable expansion exceeds the limit of ${formatSize(this.limit)} of substituted text for one build (values that double at each reference grow exponentially)`,
      );
    }
  }
}

/**
 * 8 MiB: far beyond real Dockerfiles (a few KiB; the kernel refuses a single argument or
 * environment string over 128 KiB anyway), small enough to keep time and memory in check.
 */
export const DEFAULT_EXPANSION_LIMIT = 8 * 1024 * 1024;

function formatSize(chars: number): string {
  return chars % (1024 * 1024) === 0 ? `${chars / 1024 / 1024} MiB` : `${chars} characters`;
}

export interface LexOptions {
  /** Keep quote characters in the result (used to print commands, not to evaluate them). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnsetEnv?: boolean;
  /** Charged with every substituted value; shared by lexers derived with `with()`. */
  budget?: ExpansionBudget;
}

export interface ProcessResult {
  /** The word with quotes removed and variables expanded, spaces kept. */
  result: string;
  /** The same, split into words on unquoted whitespace (also whitespace coming from variables). */
  words: string[];
  /** Variables that were referenced and set. */
  matched: Set<string>;
  /** Variables that were referenced but unset. */
  unmatched: Set<string>;
}

const EOF = '';

/** Deepest `${…${…}}` nesting expanded. */
const MAX_NESTING = 100;

/** Stands in for a WordBuilder when the words are not wanted. */
const NO_WORDS = {
  addChar(_ch: string): void {},
  addRawChar(_ch: string): void {},
  addString(_s: string): void {},
  addRawString(_s: string): void {},
  finish(): string[] {
    return [];
  },
};

/** Accumulates shell words: unquoted whitespace separates them, quoted text never does. */
class WordBuilder {
  private word = '';
  private inWord = false;
  private readonly words: string[] = [];

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }

  /** Text from a variable: its whitespace separates words too. Appends runs, not characters. */
  addString(s: string): void {
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      if (!isSpace(s[i] as string)) continue;
      if (i > start) this.addRawString(s.slice(start, i));
      this.addChar(s[i] as string);
      start = i + 1;
    }
    if (start < s.length) this.addRawString(s.slice(start));
  }

  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One pass over one word; mirrors BuildKit's shellWord. */
class WordScanner {
  private pos = 0;
  private readonly chars: string[];
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  private rawEscapes: boolean;
  private depth = 0;

  constructor(
    word: string,
    private readonly env: EnvLookup,
    private readonly escape: string,
    private readonly opts: LexOptions,
  ) {
    this.chars = Array.from(word);
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  private peek(): string {
    return this.chars[this.pos] ?? EOF;
  }

  private next(): string {
    const ch = this.chars[this.pos] ?? EOF;
    if (ch !== EOF) this.pos++;
    return ch;
  }

  run(wantWords: boolean): { result: string; words: string[] } {
    return this.processStopOn(EOF, this.rawEscapes, wantWords);
  }

  /**
   * Processes up to `stopChar` (consumed) or the end of input when `stopChar` is EOF. Words are
   * split only when asked for: nested calls use the result alone.
   */
  private processStopOn(stopChar: string, rawEscapes: boolean, wantWords = false): { result: string; words: string[] } {
    // `${A:-${B:-${C…}}}` recurses once per level: bound it before the stack is.
    if (++this.depth > MAX_NESTING) throw new ShellExpansionError(`variable substitutions nested more than ${MAX_NESTING} deep`);
    let result = '';
    const words = wantWords ? new WordBuilder() : NO_WORDS;
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      while (this.peek() !== EOF) {
        const ch = this.peek();
        if (stopChar !== EOF && ch === stopChar) {
          this.next();
          return { result, words: words.finish() };
        }
        const special = this.special(ch);
        if (special) {
          const tmp = special();
          result += tmp;
          if (ch === '$') words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        let c = this.next();
        if (c === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          c = this.next();
          if (c === EOF) break; // an escape at the very end is dropped
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stopChar !== EOF) {
        throw new ShellExpansionError(`unexpected end of statement while looking for matching ${stopChar}`);
      }
      return { result, words: words.finish() };
    } finally {
      this.rawEscapes = saved;
      this.depth--;
    }
  }

  private special(ch: string): (() => string) | undefined {
    if (ch === '$') return () => this.processDollar();
    if (ch === '<') return () => this.processPossibleHeredoc();
    if (this.opts.skipProcessQuotes) return undefined;
    if (ch === "'") return () => this.processSingleQuote();
    if (ch === '"') return () => this.processDoubleQuote();
    return undefined;
  }

  /**
   * `<<` keeps the blanks after it in the same word, so `<<  EOF` reads as one heredoc marker
   * (BuildKit's processPossibleHeredoc). The text is unchanged; only word splitting differs.
   */
  private processPossibleHeredoc(): string {
    this.next();
    if (this.peek() !== '<') return '<';
    this.next();
    let result = '<<';
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === '\r') result += this.next();
    return result;
  }

  /** Everything between single quotes is literal; a single quote cannot be escaped inside. */
  private processSingleQuote(): string {
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === EOF) throw new ShellExpansionError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  /** Inside double quotes only `$`, `"` and the escape character are special. */
  private processDoubleQuote(): string {
    let result = '';
    const open = this.next();
    if (this.opts.rawQuotes) result += open;
    for (;;) {
      const peeked = this.peek();
      if (peeked === EOF) throw new ShellExpansionError('unexpected end of statement while looking for matching double-quote');
      if (peeked === '"') {
        const close = this.next();
        if (this.opts.rawQuotes) result += close;
        return result;
      }
      if (peeked === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.next();
      if (ch === this.escape) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        if (after === EOF) continue; // reported as an unterminated quote on the next turn
        if (after === '"' || after === '$' || after === this.escape) ch = this.next();
      }
      result += ch;
    }
  }

  private processDollar(): string {
    this.next(); // '$'
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return '$' + name;
      return value ?? '';
    }
    this.next(); // '{'
    const first = this.peek();
    if (first === EOF) throw new ShellExpansionError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new ShellExpansionError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let modifier = ch;
    switch (ch) {
      case EOF:
        throw new ShellExpansionError("syntax error: missing '}'");
      case '}': {
        const value = this.getEnv(name);
        if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}}`;
        return value ?? '';
      }
      case '/':
        return this.processReplace(name);
      case ':':
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        const nullIsUnset = ch === ':';
        if (nullIsUnset) {
          ch = this.next();
          modifier += ch;
          // `${A:#x}` and `${A:%x}` are not shell syntax: an error, not a silent `#` / `%`.
          if (ch === '#' || ch === '%') throw new ShellExpansionError(`unsupported modifier (${modifier}) in substitution`);
        }
        return this.processModifier(name, ch, modifier, nullIsUnset);
      }
      default:
        throw new ShellExpansionError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  /** `${name-word}`, `${name:+word}`, `${name?msg}`, `${name#pattern}`, `${name%%pattern}`, … */
  private processModifier(name: string, ch: string, modifier: string, nullIsUnset: boolean): string {
    const rawEscapes = ch === '#' || ch === '%';
    let word: string;
    try {
      word = this.processStopOn('}', rawEscapes).result;
    } catch (err) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '}'");
      throw err;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}${modifier}${word}}`;
    const unsetOrNull = value === undefined || (nullIsUnset && value === '');
    switch (ch) {
      case '-':
        return unsetOrNull ? word : (value ?? '');
      case '+':
        return unsetOrNull ? '' : word;
      case '?':
        if (value === undefined) throw new ShellExpansionError(`${name}: ${word || 'is not allowed to be unset'}`);
        if (nullIsUnset && value === '') throw new ShellExpansionError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value;
      case '#':
      case '%': {
        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
        const greedy = word.startsWith(ch);
        const pattern = greedy ? word.slice(ch.length) : word;
        return ch === '%' ? trimSuffix(pattern, value ?? '', greedy) : trimPrefix(pattern, value ?? '', greedy);
      }
      default:
        throw new ShellExpansionError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  /** `${name/pattern/replacement}` (first match) and `${name//pattern/replacement}` (all). */
  private processReplace(name: string): string {
    const replaceAll = this.peek() === '/';
    if (replaceAll) this.next();
    let pattern: string;
    try {
      pattern = this.processStopOn('/', true).result;
    } catch (err) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '/' in ${}");
      throw err;
    }
    let replacement: string;
    try {
      replacement = this.processStopOn('}', true).result;
    } catch (err) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '}'");
      throw err;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
    const subject = value ?? '';
    const re = shellPatternToRegExp(pattern, true, false, replaceAll, subject.length);
    // Every copy of the replacement is charged before it is made: `${A//?/$B}` multiplies.
    // A function replacer: `$` in the replacement is literal, not a back-reference.
    return subject.replace(re, () => {
      this.opts.budget?.spend(replacement.length);
      return replacement;
    });
  }

  /** A variable name: letters, digits and `_`; or all-digit positional names; or one special parameter. */
  private processName(): string {
    let name = '';
    while (this.peek() !== EOF) {
      const ch = this.peek();
      if (name === '' && isDigit(ch)) {
        while (this.peek() !== EOF && isDigit(this.peek())) name += this.next();
        return name;
      }
      if (name === '' && isSpecialParam(ch)) return this.next();
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.next();
    }
    return name;
  }

  private getEnv(name: string): string | undefined {
    const value = this.env.get(name);
    if (value === undefined) this.unmatched.add(name);
    else {
      this.matched.add(name);
      this.opts.budget?.spend(value.length);
    }
    return value;
  }
}

function isSpace(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return ch.length === 1 && (c === 0x85 || /\s/u.test(ch));
}

function isDigit(ch: string): boolean {
  return /^\p{Nd}$/u.test(ch);
}

function isLetter(ch: string): boolean {
  return /^\p{L}$/u.test(ch);
}

function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch) && ch.length === 1;
}

/**
 * Converts a shell wildcard pattern (`*`, `?`, `\` escapes; no bracket expressions) to a regular
 * expression, as BuildKit's convertShellPatternToRegex does.
 */
function shellPatternToRegExp(pattern: string, greedy: boolean, anchored: boolean, global: boolean, subjectLength: number): RegExp {
  const chars = Array.from(pattern);
  // JavaScript's regular expressions backtrack (Go's do not): each `*` can multiply the work by
  // the subject's length, and an unanchored search by once more. Refuse what would not finish.
  const stars = chars.filter((c) => c === '*').length + (anchored ? 0 : 1);
  if (stars > 1 && (subjectLength + 1) ** stars > MAX_PATTERN_STEPS) {
    throw new ShellExpansionError(
      `pattern (${pattern}) in substitution: too many wildcards to match against a value of ${subjectLength} characters`,
    );
  }
  let out = anchored ? '^' : '';
  const star = greedy ? '.*' : '.*?';
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i] as string;
    switch (tok) {
      case '*':
        out += star;
        continue;
      case '?':
        out += '.';
        continue;
      case '\\': {
        // `\}` and `\/` only escape the ${} syntax; the backslash is not part of the pattern.
        const nextTok = chars[i + 1];
        if (nextTok === '}' || nextTok === '/') continue;
        i++;
        if (nextTok !== '*' && nextTok !== '?' && nextTok !== '\\') {
          throw new ShellExpansionError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${nextTok ?? ''}'`);
        }
        out += '\\' + nextTok;
        continue;
      }
      default:
        out += /[[\]{}.+()|^$]/.test(tok) ? '\\' + tok : tok;
    }
  }
  // No `s` flag: like Go's regexp, `.` does not match a newline.
  return new RegExp(out, global ? 'gu' : 'u');
}

/** About a second of backtracking at most. */
const MAX_PATTERN_STEPS = 1e8;

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = shellPatternToRegExp(pattern, greedy, true, false, value.length).exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** Regular expressions find leftmost matches, so the suffix case runs on reversed strings. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const reversed = trimPrefix(reversePattern(pattern), reverseString(value), greedy);
  return reverseString(reversed);
}

/** Reverses a pattern while keeping each `\x` escape pair in order. */
function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out = new Array<string>(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i] as string;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1] as string;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

/** A configured lexer; `escape` is the Dockerfile's escape character (`\` or a backtick). */
export class ShellLex {
  constructor(
    readonly escape: string = '\\',
    readonly options: LexOptions = {},
  ) {}

  process(word: string, env: EnvSource | EnvLookup, wantWords = true): ProcessResult {
    const scanner = new WordScanner(word, envLookup(env), this.escape, this.options);
    try {
      const { result, words } = scanner.run(wantWords);
      return { result, words, matched: scanner.matched, unmatched: scanner.unmatched };
    } catch (err) {
      if (err instanceof ShellExpansionError) {
        const shown = word.length > 200 ? `${word.slice(0, 200)}…` : word;
        throw new ShellExpansionError(`failed to process ${JSON.stringify(shown)}: ${err.message}`);
      }
      throw err;
    }
  }

  processWord(word: string, env: EnvSource | EnvLookup): string {
    return this.process(word, env, false).result;
  }

  processWords(word: string, env: EnvSource | EnvLookup): string[] {
    return this.process(word, env).words;
  }

  with(options: LexOptions): ShellLex {
    return new ShellLex(this.escape, { ...this.options, ...options });
  }
}

/** Expands one word: quotes removed, variables substituted, whitespace kept. */
export function expandWord(word: string, env: EnvSource | EnvLookup, escape = '\\'): string {
  return new ShellLex(escape).processWord(word, env);
}

/** Expands and splits into words on unquoted whitespace (including whitespace from variables). */
export function expandWords(text: string, env: EnvSource | EnvLookup, escape = '\\'): string[] {
  return new ShellLex(escape).processWords(text, env);
}
