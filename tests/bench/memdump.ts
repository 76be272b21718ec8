// `--memdump`: Chromium's own memory accounting (memory-infra) during one pull: a detailed dump
// every 2 s of every process, broken down by allocator (malloc, PartitionAlloc, V8, Blink's GC heap,
// shared memory, …). RSS says how much grew; this says which allocator holds it, so memory work
// starts from where the bytes are rather than from a guess.
import type { CDPSession, Page } from 'playwright-core';

interface DumpEvent {
  ph: string;
  name: string;
  pid: number;
  ts: number;
  args?: {
    name?: string;
    dumps?: {
      process_totals?: { resident_set_bytes?: string; private_footprint_bytes?: string };
      allocators?: Record<string, { attrs?: Record<string, { units?: string; value?: string }> }>;
    };
  };
}

/** One process at one dump: its resident size and the top-level allocators' sizes. */
export interface ProcessDump {
  process: string;
  tsMs: number;
  residentBytes: number;
  footprintBytes: number;
  allocators: Record<string, number>;
}

const INTERVAL_MS = 2000;

export class MemoryDumps {
  private constructor(private readonly cdp: CDPSession) {}

  static async start(page: Page): Promise<MemoryDumps> {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Tracing.start', {
      transferMode: 'ReturnAsStream',
      traceConfig: {
        includedCategories: ['disabled-by-default-memory-infra'],
        recordMode: 'recordAsMuchAsPossible',
        memoryDumpConfig: { triggers: [{ mode: 'detailed', periodic_interval_ms: INTERVAL_MS }] },
      } as never,
    });
    return new MemoryDumps(cdp);
  }

  async stop(): Promise<ProcessDump[]> {
    const complete = new Promise<{ stream?: string }>((resolve) => this.cdp.once('Tracing.tracingComplete', resolve));
    await this.cdp.send('Tracing.end');
    const { stream } = await complete;
    if (!stream) return [];
    const parts: string[] = [];
    for (;;) {
      const chunk = await this.cdp.send('IO.read', { handle: stream });
      parts.push(chunk.base64Encoded ? Buffer.from(chunk.data, 'base64').toString('utf8') : chunk.data);
      if (chunk.eof) break;
    }
    await this.cdp.send('IO.close', { handle: stream });
    await this.cdp.detach();
    const trace = JSON.parse(parts.join('')) as { traceEvents?: DumpEvent[] } | DumpEvent[];
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
      // Top-level allocators, and one level below for the big ones (partition_alloc/partitions/buffer, …).
      const depth = name.split('/').length;
      const size = node.attrs?.['size'];
      if (!size?.value || size.units !== 'bytes') continue;
      if (depth === 1 || (depth === 3 && name.startsWith('partition_alloc/partitions/'))) allocators[name] = parseInt(size.value, 16);
    }
    out.push({
      process: `${names.get(e.pid) ?? 'process'} ${e.pid}`,
      tsMs: e.ts / 1000,
      residentBytes: parseInt(dumps.process_totals?.resident_set_bytes ?? '0', 16),
      footprintBytes: parseInt(dumps.process_totals?.private_footprint_bytes ?? '0', 16),
      allocators,
    });
  }
  return out;
}

const MB = (n: number) => (n / 1e6).toFixed(0);

/** Per process: the first dump and the one with the largest resident size, allocators over 2 MB. */
export function memdumpLines(label: string, dumps: ProcessDump[]): string[] {
  const byProcess = new Map<string, ProcessDump[]>();
  for (const d of dumps) byProcess.set(d.process, [...(byProcess.get(d.process) ?? []), d]);
  const lines = [
    `memory-infra of ${label}: per process, first dump → the dump at its peak resident size (MB; allocators ≥ 2 MB at either)`,
  ];
  for (const [process, list] of byProcess) {
    list.sort((a, b) => a.tsMs - b.tsMs);
    const first = list[0]!;
    const peak = list.reduce((a, b) => (b.residentBytes > a.residentBytes ? b : a));
    lines.push(
      `  ${process}: resident ${MB(first.residentBytes)} → ${MB(peak.residentBytes)}, footprint ${MB(first.footprintBytes)} → ${MB(peak.footprintBytes)} (${list.length} dumps)`,
    );
    const keys = new Set([...Object.keys(first.allocators), ...Object.keys(peak.allocators)]);
    const rows = [...keys]
      .map((k) => ({ k, a: first.allocators[k] ?? 0, b: peak.allocators[k] ?? 0 }))
      .filter((r) => Math.max(r.a, r.b) >= 2e6)
      .sort((x, y) => y.b - y.a - (x.b - x.a));
    for (const r of rows) lines.push(`      ${r.k.padEnd(40)} ${MB(r.a).padStart(6)} → ${MB(r.b).padStart(6)}`);
  }
  return lines;
}
