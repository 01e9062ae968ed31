import { describe, expect, it } from 'vitest';
import { csvFields } from '../../src/util/csv.js';

describe('csvFields (one record, as Go encoding/csv reads flags and --mount)', () => {
  it('splits on commas outside quotes; a quoted field may hold commas and "" for a quote', () => {
    expect(csvFields('id=a,src=b')).toEqual(['id=a', 'src=b']);
    expect(csvFields('id=a,"src=my,file",x')).toEqual(['id=a', 'src=my,file', 'x']);
    expect(csvFields('"a ""b"" c"')).toEqual(['a "b" c']);
    expect(csvFields('a,,b,')).toEqual(['a', '', 'b', '']);
    expect(csvFields(' a , b')).toEqual([' a ', ' b']);
    expect(csvFields('')).toEqual([]);
  });

  it('refuses what encoding/csv refuses, naming the field', () => {
    expect(() => csvFields('id=a,src=a"b')).toThrow('stray quote in field 2 "src=a"b" (quote the whole field)');
    expect(() => csvFields('id=a,"src=b')).toThrow('unterminated quote in field 2');
    expect(() => csvFields('"id"=a')).toThrow('field 1 goes on after its closing quote (a quote inside quotes is written "")');
  });
});
