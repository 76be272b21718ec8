// Foreign (non-distributable) layers: Windows base layers (`…rootfs.foreign.diff.tar.gzip`) and
// OCI's `…layer.nondistributable.*` types, whose bytes live at the descriptor's `urls` rather than
// in the registry (image-spec descriptor.md "urls", layer.md "Non-distributable layers"). Through
// longshore's proxy, those URLs are reachable only under its `foreignLayerHosts` config key.
import { ErrorCode, LongshoreError } from '../errors.ts';
import { isForeignLayer } from './media-types.ts';
import type { Descriptor } from './model.ts';

/** The proxy config key that lists where foreign layers may be fetched from. */
export const FOREIGN_CONFIG_KEY = 'foreignLayerHosts';

/** The http(s) URLs a foreign layer may be fetched from, in the manifest's order; [] for any other layer. */
export function foreignUrls(d: Descriptor): string[] {
  if (!isForeignLayer(d.mediaType) || !Array.isArray(d.urls)) return [];
  return d.urls.filter((u) => {
    try {
      const url = new URL(u);
      return (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password;
    } catch {
      return false;
    }
  });
}

/** Host names of a foreign layer's URLs, for messages. */
export function foreignHosts(d: Descriptor): string[] {
  return [...new Set(foreignUrls(d).map((u) => new URL(u).host))];
}

/** A foreign layer that was not fetched (its source is not allowed), and a format that needs its bytes. */
export function foreignLayerNeeded(d: Descriptor, what: string, format: string): LongshoreError {
  const hosts = foreignHosts(d);
  return new LongshoreError(
    ErrorCode.ForeignLayer,
    `The ${what} is a foreign layer (${d.mediaType}) served from ${hosts.join(', ') || 'no URL'}, not by the registry, and it was not fetched; the ${format} format needs its bytes.`,
    {
      hint: `Allow its source in the proxy config (${FOREIGN_CONFIG_KEY}: ["${foreignUrls(d)[0] ? new URL(foreignUrls(d)[0]!).origin + '/' : 'https://host/'}"]), or choose the docker or oci format, which keep the layer's descriptor and URLs without its bytes.`,
      data: { digest: d.digest, mediaType: d.mediaType, urls: foreignUrls(d) },
    },
  );
}

/** Why a foreign layer was left out of the pull (a notice, the pull goes on). */
export function foreignLayerSkipped(d: Descriptor, what: string, reason: string): LongshoreError {
  const hosts = foreignHosts(d);
  return new LongshoreError(
    ErrorCode.ForeignLayer,
    `The ${what} is a foreign layer served from ${hosts.join(', ') || 'no URL'}; it was not fetched: ${reason}`,
    {
      hint: `The archive keeps its descriptor and URLs (a loader fetches it from there). To include its bytes, add its source to the proxy config key ${FOREIGN_CONFIG_KEY}.`,
      data: { digest: d.digest, mediaType: d.mediaType, urls: foreignUrls(d) },
    },
  );
}
