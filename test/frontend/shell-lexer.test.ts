import { describe, expect, it } from 'vitest';
import { ShellLex, expandWord, expandWords } from '../../src/frontend/index.js';

// SET has a value, EMPTY is set to "", UNSET is not set.
const env = new Map([
  ['SET', 'value'],
  ['EMPTY', ''],
  ['PWD', '/home'],
  ['SPACED', 'a  b'],
  ['KOREAN', '한국어'],
  ['PATHISH', '/usr/local/bin/node.tar.gz'],
]);

describe('quotes and escapes', () => {
  const cases: Array<[string, string]> = [
    ['hello', 'hello'],
    ['he\'llo\'', 'hello'],
    ['"hello world"', 'hello world'],
    ["'$SET'", '$SET'],
    ['"$SET"', 'value'],
    ['"\'$SET\'"', "'value'"],
    ["'\"$SET\"'", '"$SET"'],
    ['\\$SET', '$SET'],
    ['\\\\$SET', '\\value'],
    ['a\\ b', 'a b'],
    ['\\"q\\"', '"q"'],
    ['"a\\"b"', 'a"b'],
    ['"a\\$b"', 'a$b'],
    ['"a\\\\b"', 'a\\b'],
    ['"a\\nb"', 'a\\nb'], // inside double quotes only $, " and \ can be escaped
    ["'a\\nb'", 'a\\nb'],
    ['abc\\', 'abc'], // a trailing escape is dropped
    ['$', '$'],
    ['$.', '$.'],
    ['a$ b', 'a$ b'],
    ['""', ''],
    ["''", ''],
  ];
  it.each(cases)('%s → %s', (input, expected) => {
    expect(expandWord(input, env)).toBe(expected);
  });

  it('uses the escape directive character', () => {
    expect(expandWord('C:\\path\\$SET', env, '`')).toBe('C:\\path\\value');
    expect(expandWord('`$SET `"', env, '`')).toBe('$SET "');
    expect(expandWord('"a`"b"', env, '`')).toBe('a"b');
  });

  it('reports unterminated quotes', () => {
    expect(() => expandWord('"abc', env)).toThrow(/failed to process "\\"abc": unexpected end of statement while looking for matching double-quote/);
    expect(() => expandWord("'abc", env)).toThrow(/matching single-quote/);
  });
});

describe('variable expansion', () => {
  const cases: Array<[string, string]> = [
    ['$SET', 'value'],
    ['${SET}', 'value'],
    ['x${SET}y', 'xvaluey'],
    ['$SET_x', ''], // the name is SET_x
    ['${SET}_x', 'value_x'],
    ['$UNSET', ''],
    ['${UNSET}', ''],
    ['$EMPTY', ''],
    ['$KOREAN', '한국어'],
    ['$1', ''],
    ['$12x', 'x'],
    ['$@', ''],
    // ${VAR:-word}: word when unset or empty
    ['${SET:-word}', 'value'],
    ['${EMPTY:-word}', 'word'],
    ['${UNSET:-word}', 'word'],
    // ${VAR-word}: word only when unset
    ['${SET-word}', 'value'],
    ['${EMPTY-word}', ''],
    ['${UNSET-word}', 'word'],
    // ${VAR:+word}: word when set and not empty
    ['${SET:+word}', 'word'],
    ['${EMPTY:+word}', ''],
    ['${UNSET:+word}', ''],
    // ${VAR+word}: word when set, even empty
    ['${SET+word}', 'word'],
    ['${EMPTY+word}', 'word'],
    ['${UNSET+word}', ''],
    // ${VAR?msg} / ${VAR:?msg}: the value when allowed
    ['${SET?msg}', 'value'],
    ['${EMPTY?msg}', ''],
    ['${SET:?msg}', 'value'],
    // words are expanded too, quotes inside them processed
    ['${UNSET:-$SET}', 'value'],
    ['${UNSET:-"a b"}', 'a b'],
    ['${UNSET:-${EMPTY:-nested}}', 'nested'],
    ['${SET:+[$PWD]}', '[/home]'],
    // patterns
    ['${PATHISH#*/}', 'usr/local/bin/node.tar.gz'],
    ['${PATHISH##*/}', 'node.tar.gz'],
    ['${PATHISH%.*}', '/usr/local/bin/node.tar'],
    ['${PATHISH%%.*}', '/usr/local/bin/node'],
    ['${PATHISH%/*}', '/usr/local/bin'],
    ['${PATHISH#nomatch}', '/usr/local/bin/node.tar.gz'],
    ['${PATHISH/local/opt}', '/usr/opt/bin/node.tar.gz'],
    ['${PATHISH//\\//:}', ':usr:local:bin:node.tar.gz'],
    ['${PATHISH/o?e/X}', '/usr/local/bin/nX.tar.gz'],
    ['${PATHISH/#/x}', '/usr/local/bin/node.tar.gz'], // no anchors in Docker's patterns: '#' is literal
    ['${UNSET/a/b}', ''],
    ['${SET///}', 'value'],
  ];
  it.each(cases)('%s → %s', (input, expected) => {
    expect(expandWord(input, env)).toBe(expected);
  });

  it('fails for unset or empty variables with ? forms', () => {
    expect(() => expandWord('${UNSET?it is required}', env)).toThrow(/UNSET: it is required/);
    expect(() => expandWord('${UNSET?}', env)).toThrow(/UNSET: is not allowed to be unset/);
    expect(() => expandWord('${EMPTY:?}', env)).toThrow(/EMPTY: is not allowed to be empty/);
    expect(() => expandWord('${UNSET:?need $SET}', env)).toThrow(/UNSET: need value/);
  });

  it('rejects ${A:#…}, ${A:##…}, ${A:%…} and ${A:%%…} as BuildKit does, even when A is unset', () => {
    for (const [word, modifier] of [['${SET:#v}', ':#'], ['${SET:##v}', ':#'], ['${SET:%e}', ':%'], ['${UNSET:%%e}', ':%']]) {
      expect(() => expandWord(word!, env), word).toThrow(`failed to process "${word}": unsupported modifier (${modifier}) in substitution`);
      expect(() => new ShellLex('\\', { skipUnsetEnv: true }).processWord(word!, env), word).toThrow(/unsupported modifier/);
    }
  });

  it('rejects bad substitutions', () => {
    for (const bad of ['${}', '${:x}', '${SET', '${SET:-x', '${SET=x}', '${SET//x}', '${SET#\\x}']) {
      expect(() => expandWord(bad, env), bad).toThrow();
    }
  });

  it('accepts a plain record as the environment', () => {
    expect(expandWord('${A}-${B:-d}', { A: 'a' })).toBe('a-d');
    expect(expandWord('${toString:-unset}', {})).toBe('unset');
  });
});

describe('word splitting', () => {
  const cases: Array<[string, string[]]> = [
    ['a b  c', ['a', 'b', 'c']],
    ['"a b" c', ['a b', 'c']],
    ["'a b'c d", ['a bc', 'd']],
    ['a\\ b c', ['a b', 'c']],
    ['$SPACED x', ['a', 'b', 'x']], // whitespace coming from a variable splits
    ['"$SPACED" x', ['a  b', 'x']],
    ['pre$SET post', ['prevalue', 'post']],
    ['"" x', ['x']],
    ['', []],
    // Blanks after << stay in the word, so `<<  EOF` is one heredoc marker (BuildKit since 2025).
    ['cat <<  EOF > f', ['cat', '<<  EOF', '>', 'f']],
    ['a < b <<\tc', ['a', '<', 'b', '<<\tc']],
  ];
  it.each(cases)('%s → %j', (input, expected) => {
    expect(expandWords(input, env)).toEqual(expected);
  });
});

describe('display mode (raw quotes, unset kept)', () => {
  it('keeps quotes and references to unset variables', () => {
    const lex = new ShellLex('\\', { rawQuotes: true, skipUnsetEnv: true });
    expect(lex.processWord('RUN echo "$SET" \'$SET\' $UNSET ${UNSET:-x} ${SET}', env)).toBe(`RUN echo "value" '$SET' $UNSET \${UNSET:-x} value`);
  });

  it('reports which variables were used', () => {
    const r = new ShellLex().process('$SET ${UNSET:-x} ${EMPTY}', env);
    expect([...r.matched].sort()).toEqual(['EMPTY', 'SET']);
    expect([...r.unmatched]).toEqual(['UNSET']);
  });
});
