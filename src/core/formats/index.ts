// The list of output formats, the default first. The UI reads this list; a new format is one
// module plus one line here.
import { dockerFormat } from './docker.ts';
import { legacyFormat } from './legacy.ts';
import { ociFormat } from './oci.ts';
import { tarballFormat } from './tarball.ts';
import type { Format } from './types.ts';

export const formats: readonly Format[] = [dockerFormat, legacyFormat, ociFormat, tarballFormat];

export const DEFAULT_FORMAT: Format = dockerFormat;

export function formatById(id: string): Format | undefined {
  return formats.find((f) => f.id === id);
}

export type { Format, ArchivePlan, PlanContext, SinkImage } from './types.ts';
