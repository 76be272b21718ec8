// An OCI image layout in a tar (image-spec image-layout.md; skopeo's and podman's `oci-archive`,
// crane's `--format oci` directory, tarred): oci-layout, index.json and blobs/sha256/*, every blob byte-exact so every
// digest is kept. index.json holds one descriptor: the image's manifest, or with all platforms the
// registry's index itself (its bytes as served) with every child below it: each platform's
// manifest, config and layers, attestation manifests included, nested indexes too. An image chosen
// from an index keeps the platform that index gave it.
//
// Naming is the docker format's (see docker.ts): org.opencontainers.image.ref.name is the tag
// alone ("latest"), which `skopeo …oci-archive:FILE:latest` and `umoci --image DIR:latest` select
// by, and io.containerd.image.name the full name, which podman load and containerd name the image
// from (without it podman would call it "localhost/latest:latest"). One rule for both layouts.
//
// One image per archive: podman load and `skopeo copy oci-archive:FILE` take index.json's only
// entry and fail when there are several, and tags alone would collide across repositories.
// Docker media types are kept as the registry serves them (crane does the same; umoci 0.4 cannot
// unpack those, skopeo and podman can).
import type { Descriptor } from '../image/model.ts';
import { checkImages, defineFormat, sortEntries } from './entries.ts';
import { IMAGE_NAME_ANNOTATION, LayoutBlobs, REF_NAME_ANNOTATION, indexPlatform, layoutDescriptor, layoutFiles } from './layout.ts';
import { qualifiedTag, tagFor, type Format, type FormatEntry, type PlanContext, type SinkImage } from './types.ts';

export const ociFormat: Format = defineFormat({
  id: 'oci',
  label: 'OCI image layout',
  description:
    'An OCI image layout in a tar (oci-archive), digests kept, optionally with every platform; for skopeo, podman, umoci and crane.',
  needsUncompressed: false,
  multiImage: false,
  allPlatforms: true,
  async entries(images: SinkImage[], ctx: PlanContext): Promise<FormatEntry[]> {
    checkImages(this, images);
    const { image, reference, index } = images[0]!;
    const blobs = new LayoutBlobs(ctx);
    const digest = index ? index.index.digest : image.digest;
    const annotations = { [IMAGE_NAME_ANNOTATION]: qualifiedTag(reference, digest), [REF_NAME_ANNOTATION]: tagFor(reference, digest) };
    let descriptor: Descriptor;
    if (index) {
      await blobs.index(index);
      descriptor = layoutDescriptor(index.index, annotations);
    } else {
      await blobs.image(image);
      descriptor = layoutDescriptor(image, annotations, indexPlatform(image));
    }
    return sortEntries([...blobs.entries(), ...layoutFiles([descriptor])]);
  },
});
