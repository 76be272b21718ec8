// A repository's tags (distribution-spec "Listing Tags": GET /v2/<name>/tags/list?n=<count>,
// following `Link: <…?n=…&last=…>; rel="next"` until there is none), and a tag's digest by HEAD
// (Docker Hub does not count a HEAD as a pull). Every page is read with a size cap: a page over
// it is an error, never a silently cut list.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { guardBody, readCapped } from '../http/transport.ts';
import { MANIFEST_ACCEPT } from '../image/media-types.ts';
import { isDigest } from '../digest.ts';
import type { ImageReference } from '../reference.ts';
import { repositoryScope } from './challenge.ts';
import type { RegistryClient } from './client.ts';
import { registryError } from './errors.ts';

export interface TagListOptions {
  signal?: AbortSignal;
  /** `n`: tags asked for per page (a registry may send fewer, and then a Link). */
  pageSize?: number;
  /** Stop after this many tags; the result says it was cut. */
  maxTags?: number;
  /** A page's body above this is refused. */
  maxPageBytes?: number;
  /** Each page's tags as they arrive, to show progress. */
  onPage?: (tags: readonly string[]) => void;
}

export interface TagList {
  tags: string[];
  /** Pages fetched. */
  pages: number;
  /** maxTags was reached before the registry's last page. */
  truncated: boolean;
}

export const DEFAULT_TAG_PAGE = 1000;
const DEFAULT_MAX_TAGS = 100_000;
/** A page of 1000 tags of 128 characters is ~130 KiB; 4 MiB leaves room for registries that ignore n. */
const DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024;

/** The `rel="next"` target of a Link header (RFC 8288), resolved against `base`. */
export function nextLink(header: string | null, base: string): URL | undefined {
  if (!header) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /(?:^|;)\s*rel\s*=\s*"?(?:[^";]*\s)?next(?:\s[^";]*)?"?\s*(?:;|$)/i.test(m[2]!)) return new URL(m[1]!, base);
  }
  return undefined;
}

export async function listTags(client: RegistryClient, ref: ImageReference, options: TagListOptions = {}): Promise<TagList> {
  const pageSize = options.pageSize ?? DEFAULT_TAG_PAGE;
  const maxTags = options.maxTags ?? DEFAULT_MAX_TAGS;
  const maxBytes = options.maxPageBytes ?? DEFAULT_MAX_PAGE_BYTES;
  const base = client.baseUrl(ref.apiHost);
  const what = `tags of ${ref.name}`;
  const tags: string[] = [];
  const seen = new Set<string>();
  let path = `/v2/${ref.repository}/tags/list?n=${pageSize}`;
  let pages = 0;
  for (;;) {
    const response = await client.request(
      ref.apiHost,
      path,
      repositoryScope(ref.repository),
      options.signal ? { signal: options.signal } : {},
    );
    if (!response.ok) throw await registryError(response, { what, registry: ref.registry, repository: ref.repository });
    const bytes = await readCapped(response.body && guardBody(response.body, `the ${what}`, options.signal), maxBytes);
    if (!bytes) {
      throw new LongshoreError(ErrorCode.TooLarge, `A page of the ${what} is over ${maxBytes} bytes.`, {
        hint: 'The registry sent far more than asked for; the list cannot be shown.',
        data: { limit: maxBytes, page: pages + 1 },
      });
    }
    pages++;
    let page: string[];
    try {
      const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { tags?: unknown };
      page = Array.isArray(parsed.tags) ? parsed.tags.filter((t): t is string => typeof t === 'string') : [];
    } catch {
      throw new LongshoreError(ErrorCode.Registry, `The ${what} (page ${pages}) is not JSON.`, {
        hint: 'The registry (or something in between) answered oddly; try again.',
        data: { page: pages },
      });
    }
    const fresh = page.filter((t) => !seen.has(t));
    for (const t of fresh) seen.add(t);
    tags.push(...fresh.slice(0, maxTags - tags.length));
    options.onPage?.(fresh);
    if (tags.length >= maxTags) return { tags, pages, truncated: true };
    const next = nextLink(response.headers.get('link'), `${base}${path}`);
    // A page adding nothing new, or a link off the registry, ends the walk (no endless loops).
    if (!next || fresh.length === 0 || next.origin !== new URL(base).origin) return { tags, pages, truncated: false };
    path = `${next.pathname}${next.search}`;
  }
}

export interface TagHead {
  /** Docker-Content-Digest, when the registry sends it (a HEAD has no body to hash). */
  digest: string | undefined;
  mediaType: string;
  size: number | undefined;
}

/** HEAD of a tag's manifest: its digest without counting as a pull on Docker Hub. */
export async function headManifest(client: RegistryClient, ref: ImageReference, signal?: AbortSignal): Promise<TagHead> {
  const response = await client.request(ref.apiHost, `/v2/${ref.repository}/manifests/${ref.identifier}`, repositoryScope(ref.repository), {
    method: 'HEAD',
    headers: { accept: MANIFEST_ACCEPT },
    ...(signal ? { signal } : {}),
  });
  await response.body?.cancel().catch(() => undefined);
  if (!response.ok)
    throw await registryError(response, { what: `manifest ${ref.canonical}`, registry: ref.registry, repository: ref.repository });
  const digest = response.headers.get('docker-content-digest');
  const length = response.headers.get('content-length');
  return {
    digest: digest && isDigest(digest) ? digest : undefined,
    mediaType: (response.headers.get('content-type') ?? '').split(';')[0]!.trim(),
    size: length && /^\d+$/.test(length) ? Number(length) : undefined,
  };
}
