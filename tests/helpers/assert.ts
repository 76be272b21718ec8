// Small assertions shared by the integration tests.
import { expect } from 'vitest';
import { LongshoreError } from '../../src/core/errors.ts';

/** The LongshoreError `promise` rejects with; fails the test when it resolves or throws anything else. */
export async function rejection(promise: Promise<unknown>): Promise<LongshoreError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected a rejection').toBeInstanceOf(LongshoreError);
  return error as LongshoreError;
}
