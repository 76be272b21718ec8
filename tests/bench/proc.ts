// Memory of other processes, read from Linux /proc: resident set (VmRSS), proportional set
// (Pss from smaps_rollup, which does not count shared pages twice when summing a process tree)
// and the process tree below a pid. A small sampler keeps the peak of any reading.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Bytes of a `kB` line of /proc/PID/status or smaps_rollup; undefined once the process is gone. */
function kbField(path: string, field: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) * 1024 : undefined;
}

export function rssBytes(pid: number): number | undefined {
  return kbField(`/proc/${pid}/status`, 'VmRSS');
}

export function pssBytes(pid: number): number | undefined {
  return kbField(`/proc/${pid}/smaps_rollup`, 'Pss');
}

interface ProcEntry {
  pid: number;
  ppid: number;
}

function allProcesses(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // comm (field 2) may hold spaces and parentheses: parse after the last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), ppid: Number(rest[1]) });
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** Every process below `root` (not `root` itself). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const p of allProcesses()) {
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU seconds and minor page faults, of a process and (where said) its waited-for children. */
export interface ProcessUse {
  cpu: number;
  faults: number;
}

/** /proc/PID/stat's fields from `state` (proc(5) field 3) on, as index 0; undefined once gone. */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * What `pid` used, its own and its waited-for children's (utime + stime + cutime + cstime, minflt +
 * cminflt: proc(5) fields 14-17, 10-11), so a renderer that exited still counts in the process that
 * reaped it; zeros once gone.
 */
export function processUse(pid: number): ProcessUse {
  const f = statFields(pid);
  if (!f) return { cpu: 0, faults: 0 };
  return { cpu: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND, faults: Number(f[7]) + Number(f[8]) };
}

/**
 * What this process's children that exited and were reaped so far used (cutime + cstime, cminflt):
 * the difference across one child's run is that child's own (skopeo) as long as no other child of
 * this process exits meanwhile (the peers run alone, and the registries and Chromium outlive them).
 */
export function reapedChildren(): ProcessUse {
  const f = statFields('self')!;
  return { cpu: (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND, faults: Number(f[8]) };
}

/** A fault count as printed: raw below 10,000, else in thousands. */
export function faultCount(n: number): string {
  return n < 10_000 ? `${n}` : `${Math.round(n / 1000)}k`;
}

export function executable(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Chromium processes started by this node process (the browser, zygotes, renderers, GPU, utilities). */
export function chromiumProcesses(): number[] {
  return descendants(process.pid).filter((pid) => /chrom(e|ium)/.test(executable(pid) ?? ''));
}

export interface TreeMemory {
  processes: number;
  rss: number;
  pss: number;
}

/** `pss: false` skips smaps_rollup (costly) and reports pss as 0. */
export function treeMemory(pids: readonly number[], { pss: withPss = true }: { pss?: boolean } = {}): TreeMemory {
  let rss = 0;
  let pss = 0;
  let processes = 0;
  for (const pid of pids) {
    const r = rssBytes(pid);
    if (r === undefined) continue;
    processes++;
    rss += r;
    if (withPss) pss += pssBytes(pid) ?? 0;
  }
  return { processes, rss, pss };
}

/** Keeps the highest value seen per key. */
export class Peaks {
  readonly values: Record<string, number> = {};

  see(key: string, value: number | undefined): void {
    if (value === undefined || !Number.isFinite(value)) return;
    const old = this.values[key];
    if (old === undefined || value > old) this.values[key] = value;
  }
}

/**
 * Calls `sample` every `intervalMs` until stopped, never two at once (a slow CDP answer from a
 * busy worker must not pile up requests).
 */
export function startSampling(sample: () => Promise<void> | void, intervalMs = 200): { stop(): Promise<void> } {
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tick = async (): Promise<void> => {
    if (stopped) return;
    running = Promise.resolve()
      .then(sample)
      .catch(() => undefined);
    await running;
    if (!stopped) timer = setTimeout(() => void tick(), intervalMs);
  };
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => void tick(), 0);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
      // One last reading: the end of a run is often its peak.
      await Promise.resolve()
        .then(sample)
        .catch(() => undefined);
    },
  };
}
