// `--profile`: a Chromium trace of one pull (all processes and threads, "toplevel" tasks), summed
// into busy time per thread, so the bench shows where a pull's time goes (the pull worker, the
// layer workers, the browser's storage and network threads, …).
import { writeFile } from 'node:fs/promises';
import type { CdpLike } from './cdp.ts';

export interface ThreadBusy {
  process: string;
  thread: string;
  busyMs: number;
}

// LONGSHORE_TRACE_V8=1 adds V8's sampling profiler (per-thread JavaScript and native frames, in
// the raw trace written to LONGSHORE_TRACE_RAW): it costs CPU itself, so it is off by default.
const CATEGORIES = [
  'toplevel',
  'disabled-by-default-devtools.timeline',
  'devtools.timeline',
  ...(process.env['LONGSHORE_TRACE_V8'] ? ['disabled-by-default-v8.cpu_profiler'] : []),
];

export class PullTrace {
  private constructor(private readonly cdp: CdpLike) {}

  static async start(cdp: CdpLike): Promise<PullTrace> {
    await cdp.send('Tracing.start', {
      transferMode: 'ReturnAsStream',
      traceConfig: { includedCategories: CATEGORIES, recordMode: 'recordAsMuchAsPossible' },
    });
    return new PullTrace(cdp);
  }

  /** Stop tracing and sum task durations per thread, busiest first. */
  async stop(): Promise<ThreadBusy[]> {
    const text = await endTrace(this.cdp, 'LONGSHORE_TRACE_RAW');
    return text ? summarise(JSON.parse(text) as { traceEvents?: TraceEvent[] } | TraceEvent[]) : [];
  }
}

/**
 * Ends the session's trace and returns its JSON text (empty if none came), written to the file
 * named by the environment variable `rawEnv` as well when it is set; detaches the session.
 */
export async function endTrace(cdp: CdpLike, rawEnv: string): Promise<string> {
  const complete = new Promise<{ stream?: string }>((resolve) => cdp.once('Tracing.tracingComplete', resolve));
  await cdp.send('Tracing.end');
  const { stream } = await complete;
  if (!stream) return '';
  const parts: string[] = [];
  for (;;) {
    const chunk = await cdp.send<{ data: string; base64Encoded?: boolean; eof?: boolean }>('IO.read', { handle: stream });
    parts.push(chunk.base64Encoded ? Buffer.from(chunk.data, 'base64').toString('utf8') : chunk.data);
    if (chunk.eof) break;
  }
  await cdp.send('IO.close', { handle: stream });
  await cdp.detach();
  const text = parts.join('');
  const raw = process.env[rawEnv];
  if (raw) await writeFile(raw, text);
  return text;
}

interface TraceEvent {
  ph: string;
  name: string;
  cat?: string;
  pid: number;
  tid: number;
  dur?: number;
  args?: { name?: string };
}

export function summarise(trace: { traceEvents?: TraceEvent[] } | TraceEvent[]): ThreadBusy[] {
  const events = Array.isArray(trace) ? trace : (trace.traceEvents ?? []);
  const processes = new Map<number, string>();
  const threads = new Map<string, string>();
  const busy = new Map<string, number>();
  for (const e of events) {
    if (e.ph === 'M' && e.name === 'process_name') processes.set(e.pid, e.args?.name ?? String(e.pid));
    else if (e.ph === 'M' && e.name === 'thread_name') threads.set(`${e.pid}:${e.tid}`, e.args?.name ?? String(e.tid));
    else if (e.ph === 'X' && e.cat?.split(',').includes('toplevel') && typeof e.dur === 'number') {
      const key = `${e.pid}:${e.tid}`;
      busy.set(key, (busy.get(key) ?? 0) + e.dur);
    }
  }
  return [...busy.entries()]
    .map(([key, us]) => {
      const pid = Number(key.split(':')[0]);
      return { process: processes.get(pid) ?? `pid ${pid}`, thread: threads.get(key) ?? key, busyMs: Math.round(us / 1000) };
    })
    .sort((a, b) => b.busyMs - a.busyMs);
}

export function traceLines(label: string, wallSeconds: number, threads: ThreadBusy[]): string[] {
  return [
    `profile of ${label} (wall ${wallSeconds.toFixed(1)} s): busy time per thread (top 12)`,
    ...threads.slice(0, 12).map((t) => `  ${String(t.busyMs).padStart(7)} ms  ${t.process} / ${t.thread}`),
  ];
}
