// Tags of a repository and a tag's digest, for the page's tag picker: small JSON requests
// through the proxy, made from the page itself (no worker round trip), each registry answered
// with its own sign-in only.
import { parseReference } from '../core/reference.ts';
import { proxyTransport } from '../core/http/transport.ts';
import type { Credentials } from '../core/registry/auth.ts';
import { RegistryClient } from '../core/registry/client.ts';
import { headManifest, listTags, type TagHead, type TagList } from '../core/registry/tags.ts';

export interface TagService {
  list(
    repository: string,
    options: { credentials?: Record<string, Credentials>; signal?: AbortSignal; onPage?: (tags: readonly string[]) => void },
  ): Promise<TagList>;
  head(reference: string, options: { credentials?: Record<string, Credentials>; signal?: AbortSignal }): Promise<TagHead>;
}

export function createTagService(proxyBase: string, fetchFn: typeof fetch = globalThis.fetch.bind(globalThis)): TagService {
  const client = (credentials?: Record<string, Credentials>) =>
    new RegistryClient({
      transport: proxyTransport((input, init) => fetchFn(input, init), proxyBase),
      credentials: (host) => credentials?.[host],
    });
  return {
    list: (repository, { credentials, signal, onPage }) =>
      listTags(client(credentials), parseReference(repository), { ...(signal ? { signal } : {}), ...(onPage ? { onPage } : {}) }),
    head: (reference, { credentials, signal }) => headManifest(client(credentials), parseReference(reference), signal),
  };
}
