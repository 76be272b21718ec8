// The list of output formats. The UI reads this list; a new format is one module plus one line here.
import { legacyFormat } from './legacy.ts';
import type { Format } from './types.ts';

export const formats: readonly Format[] = [legacyFormat];

export function formatById(id: string): Format | undefined {
  return formats.find((f) => f.id === id);
}

export type { Format, ArchivePlan, PlanContext, SinkImage } from './types.ts';
