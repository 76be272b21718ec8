// Platforms (OCI image-spec image-index.md "platform") and choosing an index child, following
// containerd's matcher: normalised architecture names, arm variant fall-backs, children without a
// platform taken as linux/amd64, attestation manifests never chosen.
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

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
};

/** Normalise like containerd's platforms.Normalize: aarch64→arm64 (v8 implied), arm→arm/v7 by default. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  const alias = ARCH_ALIASES[architecture];
  if (alias) {
    architecture = alias.architecture;
    variant = variant ?? alias.variant;
  }
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (architecture === 'arm') {
    if (variant === undefined || variant === '7') variant = 'v7';
    else if (/^\d$/.test(variant)) variant = `v${variant}`;
  }
  const out: Platform = { os, architecture };
  if (variant) out.variant = variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  return out;
}

export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((s) => !/^[a-z0-9_.-]+$/i.test(s))) {
    throw new LongshoreError(ErrorCode.InvalidArgument, `Invalid platform ${JSON.stringify(text)}: expected os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8.`, {
      hint: 'Write the platform as os/arch or os/arch/variant.',
      data: { platform: text },
    });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os, architecture, variant });
}

export function formatPlatform(p: Platform): string {
  const base = `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
  return p['os.version'] ? `${base} (${p['os.version']})` : base;
}

export function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest'
    || (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown');
}

/** The platform a child stands for; children without one are linux/amd64 (crane/containerd default). */
export function descriptorPlatform(d: Descriptor): Platform {
  return normalizePlatform(d.platform ?? DEFAULT_PLATFORM);
}

/** arm variants a CPU of variant `v` can run, best first (containerd's arm fall-backs). */
function armFallbacks(variant: string): string[] {
  const n = Number(variant.replace(/^v/, ''));
  const out: string[] = [];
  for (let v = n; v >= 5; v--) out.push(`v${v}`);
  return out;
}

/** Rank of `have` for `want` (0 best); undefined if it cannot run there. */
export function platformRank(want: Platform, have: Platform): number | undefined {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return undefined;
  if (w['os.version'] && h['os.version'] && w['os.version'] !== h['os.version']) return undefined;
  if (w.architecture === 'arm') {
    const order = armFallbacks(w.variant ?? 'v7');
    const i = order.indexOf(h.variant ?? 'v7');
    return i < 0 ? undefined : i;
  }
  if (w.variant === h.variant) return 0;
  if (w.variant === undefined) return 1; // e.g. want amd64, have amd64/v2: acceptable, after the plain one
  return undefined;
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
  throw new LongshoreError(ErrorCode.NoMatchingPlatform, `No image for ${formatPlatform(want)} in this index; it has ${available.length ? available.join(', ') : 'no runnable images'}.`, {
    hint: available.length ? `Choose one of: ${available.join(', ')}.` : 'The index holds no image manifests (only attestations or artifacts).',
    data: { wanted: formatPlatform(want), available },
  });
}
