// Manifest parsing and validation. The media type comes from Content-Type (parameters ignored),
// else the body's mediaType, else the body's shape (umoci, for one, leaves mediaType out).
import { ErrorCode, LongshoreError } from '../errors.ts';
import { isDigest } from '../digest.ts';
import type { Descriptor, ImageConfig, ImageManifest, IndexManifest } from './model.ts';
import { MediaType, baseMediaType, isImageManifestMediaType, isIndexMediaType, isSchema1MediaType } from './media-types.ts';

/** distribution rejects manifests over 4 MiB; so do we. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export type ParsedManifest =
  { kind: 'image'; mediaType: string; manifest: ImageManifest } | { kind: 'index'; mediaType: string; manifest: IndexManifest };

function invalid(message: string, data: Record<string, unknown> = {}): LongshoreError {
  return new LongshoreError(ErrorCode.InvalidManifest, message, {
    hint: 'The registry served a manifest longshore cannot read. Check that the name points at a container image.',
    data,
  });
}

export function schema1Error(what: string): LongshoreError {
  return new LongshoreError(
    ErrorCode.UnsupportedManifest,
    `${what} is a Docker schema 1 manifest, which is deprecated and not supported.`,
    {
      hint: 'Schema 1 images predate 2017. Re-push the image with a current client (docker push, skopeo copy --format v2s2) and pull that.',
    },
  );
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  if (typeof d !== 'object' || d === null) throw invalid(`${where} is not a descriptor object.`);
  const desc = d as Partial<Descriptor>;
  if (typeof desc.mediaType !== 'string' || !desc.mediaType) throw invalid(`${where} has no mediaType.`);
  if (!isDigest(desc.digest)) {
    const digest = String(desc.digest);
    if (/^[a-z0-9]+([+._-][a-z0-9]+)*:/.test(digest) && !digest.startsWith('sha256:')) {
      throw new LongshoreError(ErrorCode.UnsupportedManifest, `${where} uses digest ${digest}; only sha256 digests are supported.`, {
        data: { digest },
      });
    }
    throw invalid(`${where} has an invalid digest ${JSON.stringify(desc.digest)}.`);
  }
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0)
    throw invalid(`${where} has an invalid size ${JSON.stringify(desc.size)}.`);
  return desc as Descriptor;
}

export function parseManifest(bytes: Uint8Array, contentType: string | null | undefined, what = 'The manifest'): ParsedManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new LongshoreError(ErrorCode.TooLarge, `${what} is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit.`, {
      data: { size: bytes.byteLength },
    });
  }
  const header = baseMediaType(contentType);
  if (isSchema1MediaType(header)) throw schema1Error(what);
  let body: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    body = parsed as Record<string, unknown>;
  } catch (err) {
    throw invalid(`${what} is not valid JSON (${(err as Error).message}).`);
  }
  if (body['schemaVersion'] === 1 || isSchema1MediaType(String(body['mediaType'] ?? ''))) throw schema1Error(what);
  if (body['schemaVersion'] !== 2) throw invalid(`${what} has schemaVersion ${JSON.stringify(body['schemaVersion'])}; expected 2.`);

  const declared = typeof body['mediaType'] === 'string' ? body['mediaType'] : undefined;
  let mediaType = isIndexMediaType(header) || isImageManifestMediaType(header) ? header : (declared ?? '');
  if (!mediaType) mediaType = Array.isArray(body['manifests']) ? MediaType.OciIndex : MediaType.OciManifest;
  if (declared && declared !== mediaType) {
    throw invalid(`${what} says it is ${declared} but was served as ${mediaType}.`, { declared, served: mediaType });
  }

  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(body['manifests'])) throw invalid(`${what} is an index without a "manifests" list.`);
    const manifests = body['manifests'].map((d, i) => checkDescriptor(d, `Index entry ${i + 1}`));
    return { kind: 'index', mediaType, manifest: { ...(body as object), manifests } as IndexManifest };
  }
  if (isImageManifestMediaType(mediaType)) {
    const config = checkDescriptor(body['config'], 'The config descriptor');
    if (!Array.isArray(body['layers'])) throw invalid(`${what} has no "layers" list.`);
    const layers = body['layers'].map((d, i) => checkDescriptor(d, `Layer ${i + 1}`));
    return { kind: 'image', mediaType, manifest: { ...(body as object), config, layers } as ImageManifest };
  }
  throw new LongshoreError(ErrorCode.UnsupportedManifest, `${what} has media type ${mediaType}, which is not a container image or index.`, {
    hint: 'The name may point at an artifact (a Helm chart, a signature, …) rather than an image.',
    data: { mediaType },
  });
}

export function parseConfig(bytes: Uint8Array, layerCount: number): ImageConfig {
  let config: ImageConfig;
  try {
    config = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as ImageConfig;
  } catch (err) {
    throw new LongshoreError(ErrorCode.InvalidManifest, `The image config is not valid JSON (${(err as Error).message}).`);
  }
  if (typeof config !== 'object' || config === null || typeof config.rootfs !== 'object' || !Array.isArray(config.rootfs?.diff_ids)) {
    throw new LongshoreError(ErrorCode.InvalidManifest, 'The image config has no rootfs.diff_ids list.', {
      hint: 'This does not look like a container image config (perhaps an artifact).',
    });
  }
  if (config.rootfs.diff_ids.length !== layerCount) {
    throw new LongshoreError(
      ErrorCode.InvalidManifest,
      `The image config lists ${config.rootfs.diff_ids.length} diff_ids but the manifest has ${layerCount} layers.`,
    );
  }
  for (const d of config.rootfs.diff_ids) {
    if (!isDigest(d)) throw new LongshoreError(ErrorCode.InvalidManifest, `The image config has an invalid diff_id ${JSON.stringify(d)}.`);
  }
  return config;
}
