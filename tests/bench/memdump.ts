// `--memdump`: Chromium's own memory accounting (memory-infra) during one pull: a light dump
// every 2 s of every process, broken down by allocator (malloc, PartitionAlloc, V8, Blink's GC heap,
// shared memory, …). RSS says how much grew; this says which allocator holds it, so memory work
// starts from where the bytes are rather than from a guess.
import type { CdpLike } from './cdp.ts';
import { endTrace } from './trace.ts';

interface DumpEvent {
  ph: string;
  name: string;
  pid: number;
  ts: number;
  args?: {
    name?: string;
    dumps?: {
      allocators?: Record<string, { attrs?: Record<string, { units?: string; value?: string }> }>;
    };
  };
}

/** One process at one dump: its allocators' sizes. */
export interface ProcessDump {
  process: string;
  tsMs: number;
  allocators: Record<string, number>;
}

const INTERVAL_MS = 2000;

export class MemoryDumps {
  private constructor(private readonly cdp: CdpLike) {}

  static async start(cdp: CdpLike): Promise<MemoryDumps> {
    await cdp.send('Tracing.start', {
      transferMode: 'ReturnAsStream',
      traceConfig: {
        includedCategories: ['disabled-by-default-memory-infra'],
        recordMode: 'recordAsMuchAsPossible',
        memoryDumpConfig: { triggers: [{ mode: 'light', periodic_interval_ms: INTERVAL_MS }] },
      } as never,
    });
    return new MemoryDumps(cdp);
  }

  async stop(): Promise<ProcessDump[]> {
    const text = await endTrace(this.cdp, 'LONGSHORE_MEMDUMP_RAW');
    if (!text) return [];
    const trace = JSON.parse(text) as { traceEvents?: DumpEvent[] } | DumpEvent[];
    return parseDumps(Array.isArray(trace) ? trace : (trace.traceEvents ?? []));
  }
}

export function parseDumps(events: DumpEvent[]): ProcessDump[] {
  const names = new Map<number, string>();
  for (const e of events) if (e.ph === 'M' && e.name === 'process_name') names.set(e.pid, e.args?.name ?? String(e.pid));
  const out: ProcessDump[] = [];
  for (const e of events) {
    const dumps = e.ph === 'v' ? e.args?.dumps : undefined;
    if (!dumps?.allocators) continue;
    const allocators: Record<string, number> = {};
    for (const [name, node] of Object.entries(dumps.allocators)) {
      // Top-level allocators, one level below (v8/main, malloc/partitions, mojo/queued_ipc_channel_message,
      // shared_memory/<id>: a data pipe or a Blob's bytes), and PartitionAlloc's partitions (buffer: ArrayBuffers).
      const depth = name.split('/').length;
      const size = node.attrs?.['size'];
      if (!size?.value || size.units !== 'bytes') continue;
      if (depth <= 2 || (depth === 3 && name.startsWith('partition_alloc/partitions/'))) allocators[name] = parseInt(size.value, 16);
    }
    out.push({
      process: `${names.get(e.pid) ?? 'process'} ${e.pid}`,
      tsMs: e.ts / 1000,
      allocators,
    });
  }
  return out;
}

const MB = (n: number) => (n / 1e6).toFixed(0);

/** Per process: each allocator's size at the first dump and its largest over the pull (allocators reaching 2 MB). */
export function memdumpLines(label: string, dumps: ProcessDump[]): string[] {
  const byProcess = new Map<string, ProcessDump[]>();
  for (const d of dumps) byProcess.set(d.process, [...(byProcess.get(d.process) ?? []), d]);
  const lines = [`memory-infra of ${label}: per process and allocator, MB at the first dump → the largest over the pull (≥ 2 MB)`];
  for (const [process, list] of byProcess) {
    list.sort((a, b) => a.tsMs - b.tsMs);
    const first = list[0]!;
    const keys = new Set(list.flatMap((d) => Object.keys(d.allocators)));
    const rows = [...keys]
      .map((k) => ({ k, a: first.allocators[k] ?? 0, b: Math.max(...list.map((d) => d.allocators[k] ?? 0)) }))
      .filter((r) => r.b >= 2e6 && !/^(shared_memory|parkable_strings|blink_objects)\/./.test(r.k))
      .sort((x, y) => y.b - y.a - (x.b - x.a));
    const totals = list.map((d) => Object.entries(d.allocators).reduce((n, [k, v]) => (k.includes('/') ? n : n + v), 0));
    lines.push(`  ${process} (${list.length} dumps): top-level allocators ${MB(totals[0]!)} → at most ${MB(Math.max(...totals))}`);
    for (const r of rows) lines.push(`      ${r.k.padEnd(44)} ${MB(r.a).padStart(6)} → ${MB(r.b).padStart(6)}`);
  }
  return lines;
}
