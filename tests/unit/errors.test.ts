// Errors crossing a worker boundary, and values that are not errors at all (WebKit's IndexedDB
// rejects with null): the person never reads "null".
import { describe, expect, it } from 'vitest';
import { LongshoreError } from '../../src/core/errors.ts';

describe('LongshoreError.from', () => {
  it('says an operation gave no reason instead of printing null or undefined', () => {
    for (const value of [null, undefined]) {
      const e = LongshoreError.from(value);
      expect(e.code).toBe('INTERNAL');
      expect(e.message).not.toBe(String(value));
      expect(e.message).toMatch(/without giving a reason/);
      expect(e.retryable).toBe(true);
    }
  });

  it('keeps a code, hint and data through toJSON, structured clone and fromJSON', () => {
    const e = new LongshoreError('NAME_UNKNOWN', 'repository x not found', { hint: 'Check the name.', data: { status: 404 } });
    const back = LongshoreError.fromJSON(structuredClone(e.toJSON()));
    expect(back).toMatchObject({ code: 'NAME_UNKNOWN', message: 'repository x not found', hint: 'Check the name.', data: { status: 404 } });
  });

  it('names a DOMException without a message by its name', () => {
    expect(LongshoreError.from(new DOMException('', 'QuotaExceededError')).message).toBe('QuotaExceededError');
  });
});
