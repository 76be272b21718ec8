// The archive's file name, shared by the page (the picker's suggested name, chosen before the
// pull starts) and the worker.
import { downloadFileName, type ImageReference } from '../../core/reference.ts';

/** One archive name for several images: the first image's name plus how many more. */
export function archiveFileName(refs: ImageReference[]): string {
  const first = downloadFileName(refs[0]!);
  return refs.length === 1 ? first : first.replace(/\.tar$/, `+${refs.length - 1}.tar`);
}
