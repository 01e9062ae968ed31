// Replacing every occurrence of a set of byte strings in a stream that arrives in chunks, in time
// linear in the stream whatever the number of strings (an Aho–Corasick automaton). Only the bytes
// that could still become part of an occurrence are held back: the longest suffix of what was
// written that is a prefix of some string. Overlapping occurrences are replaced as one.

const ROOT = 0;
const NONE = -1;
/** Children from which a node's are also kept in a table: a list scan is faster below that. */
const TABLE_FROM_CHILDREN = 8;
/** The root's table, there from the start: every byte of the stream is looked up at the root first. */
const ROOT_TABLE = 0;

interface Span {
  start: number;
  end: number;
  shown: boolean;
}

/** Byte strings to mask, compiled once (an Aho–Corasick automaton) for any number of streams. */
export class MaskPatterns {
  // The trie of the patterns, one slot per node, in arrays sized for the patterns' total length.
  // Children are first-child/next-sibling lists (patterns may be long: a table of 256 per node
  // would not fit); a node with many children (the root, and those near it when there are many
  // patterns) also gets a table, for speed.
  private readonly label: Uint8Array;
  private readonly firstChild: Int32Array;
  private readonly nextSibling: Int32Array;
  private readonly childCount: Int32Array;
  /** Index of the node's table in `tables`, or NONE. */
  private readonly tableOf: Int32Array;
  /** Child by byte, 0 for none (the root is nobody's child). */
  private readonly tables: Int32Array[] = [new Int32Array(256)];
  /** Length of the node's string: bytes that may still begin an occurrence. */
  readonly depth: Int32Array;
  private readonly fail: Int32Array;
  /** Length of the longest pattern that ends at this node (itself or through its fail chain). */
  readonly matchLength: Int32Array;
  private nodes = 1;

  /** `patterns`: the byte strings to replace (empty ones are ignored). */
  constructor(patterns: readonly Uint8Array[]) {
    const capacity = patterns.reduce((sum, p) => sum + p.length, 1);
    this.label = new Uint8Array(capacity);
    this.firstChild = new Int32Array(capacity).fill(NONE);
    this.nextSibling = new Int32Array(capacity).fill(NONE);
    this.childCount = new Int32Array(capacity);
    this.tableOf = new Int32Array(capacity).fill(NONE);
    this.tableOf[ROOT] = ROOT_TABLE;
    this.depth = new Int32Array(capacity);
    this.fail = new Int32Array(capacity);
    this.matchLength = new Int32Array(capacity);
    for (const p of patterns) if (p.length > 0) this.insert(p);
    this.link();
  }

  /** The node after `byte` from node `state` (ROOT is the start). */
  step(state: number, byte: number): number {
    for (;;) {
      if (state === ROOT) return (this.tables[ROOT_TABLE] as Int32Array)[byte] as number;
      const next = this.child(state, byte);
      if (next !== NONE) return next;
      state = this.fail[state] as number;
    }
  }

  private child(node: number, byte: number): number {
    const table = this.tableOf[node] as number;
    if (table !== NONE) return ((this.tables[table] as Int32Array)[byte] as number) || NONE;
    for (let c = this.firstChild[node] as number; c !== NONE; c = this.nextSibling[c] as number) {
      if (this.label[c] === byte) return c;
    }
    return NONE;
  }

  private insert(pattern: Uint8Array): void {
    let node = ROOT;
    for (let i = 0; i < pattern.length; i++) {
      const byte = pattern[i] as number;
      let next = this.child(node, byte);
      if (next === NONE) next = this.addChild(node, byte);
      node = next;
    }
    this.matchLength[node] = pattern.length;
  }

  private addChild(node: number, byte: number): number {
    const child = this.nodes++;
    this.label[child] = byte;
    this.nextSibling[child] = this.firstChild[node] as number;
    this.depth[child] = (this.depth[node] as number) + 1;
    this.firstChild[node] = child;
    const count = ++(this.childCount[node] as number);
    if (count === TABLE_FROM_CHILDREN && this.tableOf[node] === NONE) {
      const table = new Int32Array(256);
      for (let c = child; c !== NONE; c = this.nextSibling[c] as number) table[this.label[c] as number] = c;
      this.tableOf[node] = this.tables.push(table) - 1;
    } else if (this.tableOf[node] !== NONE) {
      (this.tables[this.tableOf[node] as number] as Int32Array)[byte] = child;
    }
    return child;
  }

  /** Fail links, breadth first: a node's is the longest proper suffix of it that is in the trie. */
  private link(): void {
    const queue = new Int32Array(this.nodes);
    let tail = 0;
    for (let c = this.firstChild[ROOT] as number; c !== NONE; c = this.nextSibling[c] as number) queue[tail++] = c;
    for (let head = 0; head < tail; head++) {
      const node = queue[head] as number;
      const inherited = this.matchLength[this.fail[node] as number] as number;
      if (inherited > (this.matchLength[node] as number)) this.matchLength[node] = inherited;
      for (let c = this.firstChild[node] as number; c !== NONE; c = this.nextSibling[c] as number) {
        this.fail[c] = this.step(this.fail[node] as number, this.label[c] as number);
        queue[tail++] = c;
      }
    }
  }
}

/** One stream's masking: what it holds back, and the occurrences found in what it holds. */
export class StreamMasker {
  private readonly patterns: MaskPatterns;
  private state = ROOT;
  /** Bytes written and not yet returned, as written, the first at stream offset `heldFrom`. */
  private held: Buffer[] = [];
  private heldFrom = 0;
  /** Stream offset of the next byte to be written. */
  private offset = 0;
  /** Masked spans among the held bytes, disjoint and in order; `shown` once its marker went out. */
  private spans: Span[] = [];

  constructor(
    patterns: MaskPatterns | readonly Uint8Array[],
    private readonly marker: Buffer = Buffer.from('***'),
  ) {
    this.patterns = patterns instanceof MaskPatterns ? patterns : new MaskPatterns(patterns);
  }

  /** The bytes of `chunk` (and of earlier ones) that are final, with occurrences replaced. */
  write(chunk: Uint8Array): Buffer {
    const patterns = this.patterns;
    let state = this.state;
    for (let i = 0; i < chunk.length; i++) {
      state = patterns.step(state, chunk[i] as number);
      const length = patterns.matchLength[state] as number;
      if (length > 0) this.addSpan(this.offset + i + 1 - length, this.offset + i + 1);
    }
    this.state = state;
    this.held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.offset += chunk.length;
    // No occurrence can start before the bytes that still match a pattern's beginning.
    const out = this.release(this.offset - (patterns.depth[state] as number));
    // What stays held of this chunk is copied: the caller may reuse its buffer.
    const last = this.held.length - 1;
    if (last >= 0) this.held[last] = Buffer.from(this.held[last] as Buffer);
    return out;
  }

  /** What is still held back: the stream has ended, so it cannot become an occurrence any more. */
  end(): Buffer {
    this.state = ROOT;
    return this.release(this.offset);
  }

  private release(upTo: number): Buffer {
    const parts: Buffer[] = [];
    while (this.heldFrom < upTo) {
      const span = this.spans[0];
      if (span && span.start <= this.heldFrom) {
        if (!span.shown) parts.push(this.marker);
        span.shown = true;
        this.consume(Math.min(span.end, upTo));
        if (span.end <= upTo) this.spans.shift();
      } else {
        this.consume(Math.min(span ? span.start : upTo, upTo), parts);
      }
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Drops the held bytes before stream offset `to`, into `out` when given. */
  private consume(to: number, out?: Buffer[]): void {
    while (this.heldFrom < to) {
      const first = this.held[0] as Buffer;
      const n = Math.min(first.length, to - this.heldFrom);
      out?.push(first.subarray(0, n));
      if (n === first.length) this.held.shift();
      else this.held[0] = first.subarray(n);
      this.heldFrom += n;
    }
  }

  /** Spans end in increasing order; a new one swallows those it overlaps (it may start earlier). */
  private addSpan(start: number, end: number): void {
    const spans = this.spans;
    const last = spans.at(-1);
    if (!last || last.end <= start) {
      spans.push({ start, end, shown: false });
      return;
    }
    // Overlapping occurrences (a repeated character, say) extend the last span in place.
    let from = spans.length - 1;
    while (from > 0 && (spans[from - 1] as Span).end > start) from--;
    for (let i = from; i < spans.length - 1; i++) last.shown ||= (spans[i] as Span).shown;
    last.start = Math.min((spans[from] as Span).start, start);
    last.end = end;
    spans.splice(from, spans.length - 1 - from);
  }
}
