// What registries said about their limits during a pull: the latest RateLimit-Limit /
// RateLimit-Remaining per registry, and the retry the client is waiting to send (Retry-After),
// as a countdown. The clock is injected so it is tested without waiting.
import type { MirrorNotice, RateLimitNotice, RegistryNotice } from '../../core/registry/rate-limit.ts';

export class RateLimitState {
  limits = $state.raw<RateLimitNotice[]>([]);
  /** Per mirrored registry, who served its requests so far (the proxy's X-Longshore-Served-By). */
  mirrors = $state.raw<MirrorNotice[]>([]);
  /** Epoch ms when the awaited retry goes out; 0 when none is awaited. */
  waitUntil = $state(0);
  waitRegistry = $state('');
  waitStatus = $state(0);
  now = $state(0);

  readonly secondsLeft = $derived(Math.max(0, Math.ceil((this.waitUntil - this.now) / 1000)));
  readonly waiting = $derived(this.waitUntil > this.now);

  constructor(private readonly clock: () => number = () => Date.now()) {
    this.now = clock();
  }

  apply(notice: RegistryNotice): void {
    this.now = this.clock();
    if (notice.type === 'rate-limit') {
      this.limits = [...this.limits.filter((l) => l.registry !== notice.registry), notice];
    } else if (notice.type === 'mirror') {
      this.mirrors = [...this.mirrors.filter((m) => m.registry !== notice.registry), notice];
    } else {
      this.waitUntil = notice.until;
      this.waitRegistry = notice.registry;
      this.waitStatus = notice.status;
    }
  }

  /** Advances the countdown (the component calls it every second while waiting). */
  tick(): void {
    this.now = this.clock();
  }

  /** The pull ended (done, failed or cancelled): nothing is awaited any more. */
  endWait(): void {
    this.waitUntil = 0;
  }
}

/** "per 6 h" for Docker Hub's w=21600. */
export function windowText(seconds: number | undefined): string {
  if (!seconds) return '';
  if (seconds % 3600 === 0) return ` per ${seconds / 3600} h`;
  if (seconds % 60 === 0) return ` per ${seconds / 60} min`;
  return ` per ${seconds} s`;
}

/** "served by mirror 127.0.0.1:5001" / "mirror 127.0.0.1:5001 down, served by the registry". */
export function mirrorText(m: MirrorNotice): string {
  if (m.servedBy === 'mirror') return `${m.registry}: served by mirror ${m.mirror}`;
  const why =
    m.reason === 'down' ? 'down' : m.reason === 'missing' ? 'lacks it' : m.reason === 'unauthorized' ? 'refused access' : 'not used';
  return `${m.registry}: mirror ${m.mirror} ${why}, served by the registry itself (upstream)`;
}
