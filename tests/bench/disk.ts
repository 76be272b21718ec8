// Disk the benchmark needs: free space of the file systems it writes to (the cache with the image
// layout and the registry storage, the temp directory with Chromium's profiles and downloads,
// /var/tmp where skopeo stages big files), read every 500 ms; a window reports how far the free
// space fell below where it stood when the window opened. The machine is shared, so other
// processes' writes count too: a figure to size a run by, not an exact account.
import { statfsSync, statSync } from 'node:fs';

export interface DiskWindow {
  /** Bytes the free space fell, at most, since the window opened (0 if it only grew). */
  peakUse(): number;
  close(): number;
}

export class DiskWatch {
  readonly #paths: string[];
  readonly #windows = new Set<{ start: number; low: number }>();
  readonly #timer: NodeJS.Timeout;

  /** `paths` on the same file system are counted once. */
  constructor(paths: readonly string[]) {
    const seen = new Set<number>();
    this.#paths = paths.filter((p) => {
      let dev: number;
      try {
        dev = statSync(p).dev;
      } catch {
        return false;
      }
      if (seen.has(dev)) return false;
      seen.add(dev);
      return true;
    });
    this.#timer = setInterval(() => this.#sample(), 500);
    this.#timer.unref();
  }

  /** Free bytes summed over the watched file systems. */
  free(): number {
    let n = 0;
    for (const p of this.#paths) {
      try {
        const s = statfsSync(p);
        n += s.bavail * s.bsize;
      } catch {
        // A path removed while watched: no reading.
      }
    }
    return n;
  }

  #sample(): void {
    const free = this.free();
    for (const w of this.#windows) w.low = Math.min(w.low, free);
  }

  open(): DiskWindow {
    const free = this.free();
    const w = { start: free, low: free };
    this.#windows.add(w);
    return {
      peakUse: () => Math.max(0, w.start - Math.min(w.low, this.free())),
      close: () => {
        this.#sample();
        this.#windows.delete(w);
        return Math.max(0, w.start - w.low);
      },
    };
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
