// Platforms (OCI image-spec image-index.md "platform") and choosing an index child as containerd's
// platforms.Only does: normalised names, older variants and 32-bit modes as fall-backs in its order,
// never a newer variant than asked; children without a platform are linux/amd64; attestation
// manifests are never chosen.
import { ErrorCode, LongshoreError } from '../errors.ts';
import type { Descriptor } from './model.ts';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string | undefined;
  'os.version'?: string | undefined;
  'os.features'?: string[] | undefined;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/**
 * Canonical names, as containerd's platforms.Normalize (database.go normalizeArch): aliases of
 * architectures, and the variants a name implies or that every CPU of it has. arm64/v8 and amd64/v1
 * are written without a variant, arm without one is arm/v7, arm64 v9.0 is v9.
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  const { architecture, variant } = normalizeArch(p.architecture.toLowerCase(), p.variant?.toLowerCase() ?? '');
  const out: Platform = { os, architecture };
  if (variant) out.variant = variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  return out;
}

function normalizeArch(architecture: string, variant: string): { architecture: string; variant: string } {
  switch (architecture) {
    case 'i386':
    case 'i686':
      return { architecture: '386', variant: '' };
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return { architecture: 'amd64', variant: variant === 'v1' ? '' : variant };
    case 'aarch64':
    case 'arm64':
      if (['8', 'v8', 'v8.0'].includes(variant)) return { architecture: 'arm64', variant: '' };
      if (['9', '9.0', 'v9.0'].includes(variant)) return { architecture: 'arm64', variant: 'v9' };
      return { architecture: 'arm64', variant };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm':
      if (variant === '' || variant === '7') return { architecture, variant: 'v7' };
      if (['5', '6', '8'].includes(variant)) return { architecture, variant: `v${variant}` };
      return { architecture, variant };
    default:
      return { architecture, variant };
  }
}

export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((s) => !/^[a-z0-9_.-]+$/i.test(s))) {
    throw new LongshoreError(
      ErrorCode.InvalidArgument,
      `Invalid platform ${JSON.stringify(text)}: expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8.`,
      {
        hint: 'Write the platform as os/arch or os/arch/variant.',
        data: { platform: text },
      },
    );
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os, architecture, variant });
}

/** The one label for a platform: os/architecture[/variant], and the OS version when there is one. */
export function formatPlatform(p: Platform): string {
  const base = `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
  return p['os.version'] ? `${base} (${p['os.version']})` : base;
}

/** The label of an image config's platform (OCI image-spec config.md os/architecture/variant), if it names one. */
export function configPlatformLabel(config: {
  os?: string | undefined;
  architecture?: string | undefined;
  variant?: string | undefined;
}): string | undefined {
  if (!config.os || !config.architecture) return undefined;
  return formatPlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) });
}

export function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown')
  );
}

/** The platform a child stands for; children without one are linux/amd64 (crane/containerd default). */
export function descriptorPlatform(d: Descriptor): Platform {
  return normalizePlatform(d.platform ?? DEFAULT_PLATFORM);
}

/**
 * The platforms a machine of `want` runs, best first: containerd's platformVector (compare.go), the
 * order its platforms.Only matcher ranks an index's children by. Older variants of the same
 * architecture follow the wanted one (amd64/v3 → v2 → v1, arm/v7 → v6 → v5, arm64/v8.2 → v8.1 → v8;
 * arm64/v9.x also runs v8.{x+5} and below); amd64 also runs 386, arm64 also runs arm/v8 down to v5.
 * Nothing newer than asked is ever in the list: a plain amd64 does not take amd64/v3.
 */
export function compatiblePlatforms(want: Platform): Platform[] {
  const w = normalizePlatform(want);
  const same = (architecture: string, variant: string): Platform => {
    const p: Platform = { ...w, architecture };
    delete p.variant;
    if (variant) p.variant = variant;
    return normalizePlatform(p);
  };
  const out: Platform[] = [w];
  const level = (variant: string | undefined): number => Number.parseInt((variant ?? '').replace(/^v/, ''), 10);
  switch (w.architecture) {
    case 'amd64': {
      for (let v = level(w.variant) - 1; v >= 1; v--) out.push(same('amd64', `v${v}`));
      out.push(same('386', ''));
      break;
    }
    case 'arm': {
      for (let v = level(w.variant) - 1; v >= 5; v--) out.push(same('arm', `v${v}`));
      break;
    }
    case 'arm64': {
      const variant = w.variant ?? 'v8';
      const [majorText, minorText] = variant.split('.');
      let major = level(majorText);
      if (major >= 8) {
        let minor = minorText !== undefined && /^\d$/.test(minorText) ? Number(minorText) : 0;
        const arm64 = (ma: number, mi: number) => same('arm64', mi === 0 ? `v${ma}` : `v${ma}.${mi}`);
        if (major === 9) {
          for (let m = minor - 1; m >= 0; m--) out.push(arm64(9, m));
          // Armv9.0 is Armv8.5 plus more, so v9.x runs what v8.{x+5} runs.
          minor += 5;
          major = 8;
          out.push(arm64(8, minor));
        }
        for (let m = minor - 1; m >= 0; m--) out.push(arm64(major, m));
      }
      // AArch32 state: an arm64 CPU runs arm/v8 and what that runs.
      out.push(...compatiblePlatforms({ ...w, architecture: 'arm', variant: /^v[89]\./.test(variant) ? 'v8' : variant }));
      break;
    }
  }
  return out;
}

function samePlatform(a: Platform, b: Platform): boolean {
  if (a.os !== b.os || a.architecture !== b.architecture || (a.variant ?? '') !== (b.variant ?? '')) return false;
  return !(a['os.version'] && b['os.version'] && a['os.version'] !== b['os.version']);
}

/** Rank of `have` for `want` (0 best); undefined if a `want` machine cannot run it. */
export function platformRank(want: Platform, have: Platform): number | undefined {
  const h = normalizePlatform(have);
  const i = compatiblePlatforms(want).findIndex((p) => samePlatform(p, h));
  return i < 0 ? undefined : i;
}

/** Children the user may choose from: attestations and other non-image entries left out. */
export function selectablePlatforms(manifests: readonly Descriptor[]): { platform: Platform; descriptor: Descriptor }[] {
  return manifests.filter((d) => !isAttestation(d)).map((d) => ({ platform: descriptorPlatform(d), descriptor: d }));
}

export function matchPlatform(manifests: readonly Descriptor[], want: Platform): Descriptor {
  let best: { d: Descriptor; rank: number } | undefined;
  for (const { platform, descriptor } of selectablePlatforms(manifests)) {
    const rank = platformRank(want, platform);
    if (rank !== undefined && (!best || rank < best.rank)) best = { d: descriptor, rank };
  }
  if (best) return best.d;
  const available = selectablePlatforms(manifests).map((c) => formatPlatform(c.platform));
  throw new LongshoreError(
    ErrorCode.NoMatchingPlatform,
    `No image for ${formatPlatform(want)} in this index; it has ${available.length ? available.join(', ') : 'no runnable images'}.`,
    {
      hint: available.length
        ? `Choose one of: ${available.join(', ')}.`
        : 'The index holds no image manifests (only attestations or artifacts).',
      data: { wanted: formatPlatform(want), available },
    },
  );
}
