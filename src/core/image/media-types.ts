// Media types of the OCI image-spec (media-types.md) and Docker's image manifest v2 schema 2.

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  InTotoJson: 'application/vnd.in-toto+json',
} as const;

export type ManifestKind = 'image' | 'index';

export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.DockerManifestList, MediaType.OciManifest, MediaType.DockerManifest].join(
  ', ',
);

export function isIndexMediaType(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isImageManifestMediaType(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isSchema1MediaType(mt: string): boolean {
  return mt === MediaType.DockerSchema1 || mt === MediaType.DockerSchema1Signed;
}

export type LayerCompression = 'gzip' | 'zstd' | 'none' | 'unknown';

/** What a layer media type says about its compression (the bytes are sniffed too, see compression.ts). */
export function layerCompression(mt: string): LayerCompression {
  if (mt.endsWith('+gzip') || mt.endsWith('.tar.gzip') || mt === MediaType.DockerForeignLayer) return 'gzip';
  if (mt.endsWith('+zstd')) return 'zstd';
  if (mt.endsWith('.tar') || mt === MediaType.DockerLayer) return 'none';
  return 'unknown';
}

export function isForeignLayer(mt: string): boolean {
  return mt === MediaType.DockerForeignLayer || mt.startsWith('application/vnd.oci.image.layer.nondistributable.');
}

/** Strip parameters: "application/json; charset=utf-8" → "application/json". */
export function baseMediaType(contentType: string | null | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}
