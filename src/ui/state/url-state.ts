// The page's state in its URL (`?image=…&platform=…&format=…`), so a link opens the same pull
// for a colleague and the browser's back button returns to the previous name. A link only fills
// the form and looks the name up; a download always needs a click. Credentials never go in it.

export interface LinkState {
  /** The names as typed (several separated by spaces or commas). */
  image: string;
  platform?: string;
  format?: string;
  /** Every platform of an index (formats that can hold one). */
  allPlatforms?: boolean;
}

/** Longer than any sensible list of names; a link carrying more is not ours. */
const MAX_IMAGE_TEXT = 4096;
const PLATFORM = /^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_.]+)?$/;

/** The link's state, keeping only values the page can take; undefined when it names no image. */
export function readLink(search: string, formatIds: readonly string[]): LinkState | undefined {
  const params = new URLSearchParams(search);
  const image = (params.get('image') ?? '').trim();
  if (!image || image.length > MAX_IMAGE_TEXT) return undefined;
  const link: LinkState = { image };
  const platform = params.get('platform');
  if (platform && PLATFORM.test(platform)) link.platform = platform;
  const format = params.get('format');
  if (format && formatIds.includes(format)) link.format = format;
  if (params.get('all') === '1') link.allPlatforms = true;
  return link;
}

/** '?image=…&platform=…&format=…' ('' when there is no name), in one fixed order. */
export function linkQuery(state: LinkState): string {
  const image = state.image.trim();
  if (!image) return '';
  const params = new URLSearchParams({ image });
  if (state.platform) params.set('platform', state.platform);
  if (state.format) params.set('format', state.format);
  if (state.allPlatforms) params.set('all', '1');
  return `?${params.toString()}`;
}
