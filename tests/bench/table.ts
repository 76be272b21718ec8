// Figures in, text out: medians and spreads, the machine the numbers came from, a console table
// and the same as Markdown for the README. No judgement of the figures: a benchmark prints.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

export interface Sample {
  /** The run's wall time: longshore Pull click → Chromium finished writing the download; skopeo spawn → exit. */
  seconds: number;
  /** longshore only: Pull click → Download button. */
  buttonSeconds?: number;
  /** longshore only: seconds after the click at which each page status first showed. */
  phases?: Record<string, number>;
  outputBytes: number;
  /** pageHeap, workerHeap, heapSum, chromiumRss, chromiumPss, chromiumRssAtStart, proxyRss, skopeoRss, disk (bytes). */
  peaks: Record<string, number>;
  /** How many 200 ms heap readings answered; a worker busy in one long step misses some. */
  heapSamples?: { page: number; worker: number; workerMissed: number };
  /** Layer blob requests (GET/HEAD) that reached the registry or the static server during the run. */
  layerRequests?: number;
  /** Other blob requests (the config) in the same window. */
  otherBlobRequests?: number;
  /** The blob requests themselves, kept when their count was not the expected one. */
  requestLog?: string[];
  /**
   * Through the shaping relay (--link): layer body bytes it served, those of requests made after a
   * cut, how many layers were cut and their size, the largest share of one cut layer fetched after
   * its cut (%), bytes beyond each layer's size (fetched twice),
   * and when the last layer byte left it (performance.now() of the bench process).
   */
  relay?: { layerBytes: number; afterCut: number; cuts: number; cutBytes: number; worstPercent: number; twice: number; lastByteAt: number };
  /**
   * longshore: seconds from the last layer byte to the file complete (`downloaded`): `relay`, from
   * when the relay sent it (--link); `page`, from when the page's progress showed every layer full.
   */
  tail?: { relay?: number; page?: number };
}

export interface Scenario {
  key: string;
  variant: string;
  tool: 'longshore' | 'skopeo';
  /** longshore: the page's format id; skopeo: the archive transport. */
  what: string;
  cache?: 'cold' | 'warm';
  /** The skopeo scenario key this one is compared with. */
  peerKey?: string;
  /** The ratio to that peer the issue asks for, and which target it is. */
  target?: { max: number; why: string };
  /** Compressed bytes of the image's layers (the network input). */
  inputBytes: number;
  samples: Sample[];
  failure?: string;
  /** The tool cannot do this (not a failure): no row, a note instead. */
  unsupported?: string;
}

export interface Summary {
  key: string;
  variant: string;
  label: string;
  runs: number;
  median: number;
  min: number;
  max: number;
  mbPerSecond: number;
  ratio: number | undefined;
  ratioPeer: string | undefined;
  target: { max: number; why: string } | undefined;
  /** Medians of Sample.tail. */
  tailRelay: number | undefined;
  tailPage: number | undefined;
  /** Most disk the run took (free space fall), over its samples. */
  disk: number | undefined;
  buttonMedian: number | undefined;
  phases: Record<string, number> | undefined;
  outputBytes: number;
  pageHeap: number | undefined;
  workerHeap: number | undefined;
  heapSum: number | undefined;
  pageBuffers: number | undefined;
  workerBuffers: number | undefined;
  /** Chromium tree (longshore) or the skopeo process (skopeo). */
  rss: number | undefined;
  pss: number | undefined;
  rssAtStart: number | undefined;
  proxyRss: number | undefined;
  layerRequests: number | undefined;
  otherBlobRequests: number | undefined;
  /** Set when a run of this scenario broke; later rounds skip it. */
  failure?: string;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function peak(samples: readonly { peaks: Record<string, number> }[], key: string): number | undefined {
  const values = samples.map((s) => s.peaks[key]).filter((v): v is number => v !== undefined);
  return values.length ? Math.max(...values) : undefined;
}

function scenarioLabel(s: Scenario): string {
  return s.tool === 'longshore' ? `longshore ${s.what} ${s.cache}` : `skopeo → ${s.what}`;
}

export function summarise(scenarios: readonly Scenario[]): Summary[] {
  const medians = new Map(scenarios.map((s) => [s.key, s.samples.length ? median(s.samples.map((x) => x.seconds)) : NaN]));
  return scenarios
    .filter((s) => s.samples.length > 0)
    .map((s): Summary => {
      const seconds = s.samples.map((x) => x.seconds);
      const m = median(seconds);
      const peerMedian = s.peerKey ? medians.get(s.peerKey) : undefined;
      const buttons = s.samples.map((x) => x.buttonSeconds).filter((v): v is number => v !== undefined);
      const phaseNames = [...new Set(s.samples.flatMap((x) => Object.keys(x.phases ?? {})))];
      const phases = phaseNames.length
        ? Object.fromEntries(
            phaseNames.map((p) => [p, median(s.samples.map((x) => x.phases?.[p]).filter((v): v is number => v !== undefined))]),
          )
        : undefined;
      const middle = (pick: (x: Sample) => number | undefined): number | undefined => {
        const values = s.samples.map(pick).filter((v): v is number => v !== undefined);
        return values.length ? median(values) : undefined;
      };
      const most = (pick: (x: Sample) => number | undefined): number | undefined => {
        const values = s.samples.map(pick).filter((v): v is number => v !== undefined);
        return values.length ? Math.max(...values) : undefined;
      };
      return {
        key: s.key,
        variant: s.variant,
        label: scenarioLabel(s),
        runs: seconds.length,
        median: m,
        min: Math.min(...seconds),
        max: Math.max(...seconds),
        mbPerSecond: s.inputBytes / 1e6 / m,
        ratio: peerMedian !== undefined && Number.isFinite(peerMedian) ? m / peerMedian : undefined,
        ratioPeer: s.peerKey ? scenarios.find((x) => x.key === s.peerKey)?.what : undefined,
        target: s.target,
        tailRelay: middle((x) => x.tail?.relay),
        tailPage: middle((x) => x.tail?.page),
        disk: peak(s.samples, 'disk'),
        buttonMedian: buttons.length ? median(buttons) : undefined,
        phases,
        outputBytes: median(s.samples.map((x) => x.outputBytes)),
        pageHeap: peak(s.samples, 'pageHeap'),
        workerHeap: peak(s.samples, 'workerHeap'),
        heapSum: peak(s.samples, 'heapSum'),
        pageBuffers: peak(s.samples, 'pageBuffers'),
        workerBuffers: peak(s.samples, 'workerBuffers'),
        rss: s.tool === 'longshore' ? peak(s.samples, 'chromiumRss') : peak(s.samples, 'skopeoRss'),
        pss: peak(s.samples, 'chromiumPss'),
        rssAtStart: peak(s.samples, 'chromiumRssAtStart'),
        proxyRss: peak(s.samples, 'proxyRss'),
        layerRequests: most((x) => x.layerRequests),
        otherBlobRequests: most((x) => x.otherBlobRequests),
        ...(s.failure ? { failure: s.failure } : {}),
      };
    });
}

export interface ProxyCostSummary {
  bytes: number;
  directMBps: number;
  proxyMBps: number;
  directSpread: [number, number];
  proxySpread: [number, number];
  lostPercent: number;
  proxyRss: number | undefined;
}

export function summariseProxyCost(
  bytes: number,
  directSeconds: number[],
  proxySeconds: number[],
  proxyRss: number | undefined,
): ProxyCostSummary {
  const rate = (s: number) => bytes / 1e6 / s;
  const directMBps = rate(median(directSeconds));
  const proxyMBps = rate(median(proxySeconds));
  return {
    bytes,
    directMBps,
    proxyMBps,
    directSpread: [rate(Math.max(...directSeconds)), rate(Math.min(...directSeconds))],
    proxySpread: [rate(Math.max(...proxySeconds)), rate(Math.min(...proxySeconds))],
    lostPercent: (1 - proxyMBps / directMBps) * 100,
    proxyRss,
  };
}

export interface Machine {
  date: string;
  nproc: number;
  memTotal: string;
  cpu: string;
  chromium: string;
  node: string;
  skopeo: string;
  loadAverage: { start: string; end?: string };
}

function firstMatch(text: string, re: RegExp): string | undefined {
  return re.exec(text)?.[1]?.trim();
}

export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

const exec = promisify(execFile);

async function commandOutput(command: string, args: string[]): Promise<string> {
  try {
    return (await exec(command, args)).stdout.trim();
  } catch {
    return 'unknown';
  }
}

export async function describeMachine(chromiumVersion: string | undefined): Promise<Machine> {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const memKb = Number(firstMatch(meminfo, /^MemTotal:\s+(\d+) kB/m) ?? 0);
  return {
    date: new Date().toISOString(),
    nproc: Number(await commandOutput('nproc', [])),
    memTotal: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    cpu: firstMatch(cpuinfo, /^model name\s*:\s*(.+)$/m) ?? 'unknown',
    chromium: chromiumVersion ?? (await commandOutput('/usr/bin/chromium', ['--version'])),
    node: process.version,
    skopeo: (await commandOutput('skopeo', ['--version'])).replace(/^skopeo version /, ''),
    loadAverage: { start: loadAverage() },
  };
}

const mb = (bytes: number | undefined): string => (bytes === undefined ? '—' : `${(bytes / 1e6).toFixed(0)}`);
const secs = (s: number): string => (s >= 100 ? s.toFixed(0) : s.toFixed(1));

interface Column {
  title: string;
  cell(s: Summary): string;
}

const COLUMNS: Column[] = [
  { title: 'layers', cell: (s) => s.variant },
  { title: 'run', cell: (s) => s.label },
  { title: 'wall s, median (min–max)', cell: (s) => (s.runs > 1 ? `${secs(s.median)} (${secs(s.min)}–${secs(s.max)})` : secs(s.median)) },
  { title: 'MB/s in', cell: (s) => s.mbPerSecond.toFixed(1) },
  {
    title: '÷ skopeo (target)',
    cell: (s) =>
      s.ratio === undefined ? '—' : `${s.ratio.toFixed(2)}× ${s.ratioPeer}${s.target ? ` (≤ ${s.target.max.toFixed(1)})` : ''}`,
  },
  { title: 'to button s', cell: (s) => (s.buttonMedian === undefined ? '—' : secs(s.buttonMedian)) },
  {
    title: 'file after last byte s relay / page',
    cell: (s) =>
      s.tailRelay === undefined && s.tailPage === undefined
        ? '—'
        : `${s.tailRelay === undefined ? '—' : s.tailRelay.toFixed(2)} / ${s.tailPage === undefined ? '—' : s.tailPage.toFixed(2)}`,
  },
  { title: 'out MB', cell: (s) => mb(s.outputBytes) },
  {
    title: 'heap MB page / workers',
    cell: (s) => (s.pageHeap === undefined && s.workerHeap === undefined ? '—' : `${mb(s.pageHeap)} / ${mb(s.workerHeap)}`),
  },
  {
    title: 'buffers MB page / workers',
    cell: (s) => (s.pageBuffers === undefined && s.workerBuffers === undefined ? '—' : `${mb(s.pageBuffers)} / ${mb(s.workerBuffers)}`),
  },
  { title: 'RSS MB at click', cell: (s) => mb(s.rssAtStart) },
  {
    title: 'peak RSS MB (PSS)',
    cell: (s) => (s.rss === undefined ? '—' : s.pss !== undefined ? `${mb(s.rss)} (${mb(s.pss)})` : mb(s.rss)),
  },
  { title: 'proxy RSS MB', cell: (s) => mb(s.proxyRss) },
  { title: 'layer reqs (other)', cell: (s) => (s.layerRequests === undefined ? '—' : `${s.layerRequests} (${s.otherBlobRequests ?? 0})`) },
  { title: 'disk GB', cell: (s) => (s.disk === undefined ? '—' : (s.disk / 1e9).toFixed(1)) },
];

/**
 * Which of issue 14's targets apply to the rows and where each stands: the ratio to skopeo (see
 * Scenario.target) and the file complete within `tailSeconds` of the last layer byte.
 */
export function targetLines(summaries: readonly Summary[], tailSeconds: number): string[] {
  const lines: string[] = [];
  for (const s of summaries) {
    if (s.target && s.ratio !== undefined)
      lines.push(
        `target ${s.variant} ${s.label}: ${s.target.why} → ${s.ratio.toFixed(2)}× ${s.ratioPeer} — ${s.ratio <= s.target.max ? 'met' : 'not met'}`,
      );
    const tail = s.tailRelay ?? s.tailPage;
    if (tail !== undefined && s.label.endsWith('cold'))
      lines.push(
        `target ${s.variant} ${s.label}: file complete within ${tailSeconds} s of the last layer byte: ` +
          `${s.tailRelay !== undefined ? `${s.tailRelay.toFixed(2)} s after it left the relay` : ''}` +
          `${s.tailRelay !== undefined && s.tailPage !== undefined ? ', ' : ''}` +
          `${s.tailPage !== undefined ? `${s.tailPage.toFixed(2)} s after the page showed it` : ''} — ${tail <= tailSeconds ? 'met' : 'not met'}`,
      );
  }
  return lines;
}

/** Scenarios that broke before giving a sample, as one line each. */
export function failureLines(scenarios: readonly Scenario[]): string[] {
  return scenarios
    .filter((s) => s.failure)
    .map((s) => `${s.variant} ${scenarioLabel(s)}: BROKEN after ${s.samples.length} run(s): ${s.failure}`);
}

export function unsupportedLines(scenarios: readonly Scenario[]): string[] {
  return scenarios.filter((s) => s.unsupported).map((s) => `${s.variant} ${scenarioLabel(s)}: not measurable: ${s.unsupported}`);
}

export function consoleTable(summaries: readonly Summary[]): string {
  const rows = [COLUMNS.map((c) => c.title), ...summaries.map((s) => COLUMNS.map((c) => c.cell(s)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export function phaseLines(summaries: readonly Summary[]): string[] {
  return summaries
    .filter((s) => s.phases)
    .map(
      (s) =>
        `${s.variant} ${s.label}: ${Object.entries(s.phases!)
          .map(([p, t]) => `${p} @${t.toFixed(2)} s`)
          .join(', ')}`,
    );
}

/** Where the listed layer comes from: an image pulled in the page (blobs read back from IndexedDB), or a local archive given to "Open local archive". */
export type ListingSource = 'pulled' | 'archive';

export const LISTING_SOURCE_LABEL: Record<ListingSource, string> = {
  pulled: 'layer of an image pulled in the page',
  archive: 'local oci-archive opened in the page',
};

/** The issue's targets for a 100,000-entry layer: first rows, complete listing, longest main-thread task. */
export const LISTING_TARGETS = { firstRowsMs: 1000, completeMs: 5000, longestTaskMs: 100 } as const;

/** One listing run, in the page's clock (performance.now()), from the moment the inspector is given the image. */
export interface ListingSample {
  source: ListingSource;
  /** → the first entry row in the DOM. */
  firstRowsMs: number;
  /** → layer 1 `complete` and the table showing every entry. */
  completeMs: number;
  /** Rows the table showed at the end (must equal the layer's entries). */
  entries: number;
  /** Long tasks (Long Tasks API, > 50 ms) on the main thread overlapping [start, complete]. */
  longTasks: number;
  longestTaskMs: number;
  /** Sum of their durations. */
  longTaskMs: number;
  /** Long animation frames (LoAF API: a frame over 50 ms, its rendering included) overlapping the same window: a cross-check. */
  longFrames: number;
  longestFrameMs: number;
  /** For reading a run: when the Table view was switched to, and each long task / long frame as [start, duration], ms from the start. */
  timeline: { tableMs?: number; longTasks: [number, number][]; longFrames: [number, number][] };
  /** pulled only: Pull click → status ready (then the bench presses "Browse the files"). */
  pullMs?: number;
  /** pageHeap, workerHeap, pageBuffers, workerBuffers (bytes): peaks of 200 ms CDP readings over the whole page's life. */
  peaks: Record<string, number>;
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface ListingSummary {
  source: ListingSource;
  entries: number;
  runs: number;
  firstRowsMs: Spread;
  completeMs: Spread;
  longTasks: Spread;
  longestTaskMs: Spread;
  longFrames: Spread;
  longestFrameMs: Spread;
  pullMs: Spread | undefined;
  pageHeap: number | undefined;
  workerHeap: number | undefined;
  /** Set when a run broke (timeout, wrong total); later rounds skip this source. */
  failure?: string;
}

function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export function summariseListing(
  source: ListingSource,
  entries: number,
  samples: readonly ListingSample[],
  failure?: string,
): ListingSummary {
  const pulls = samples.map((s) => s.pullMs).filter((v): v is number => v !== undefined);
  const nan: Spread = { median: NaN, min: NaN, max: NaN };
  const of = (pick: (s: ListingSample) => number): Spread => (samples.length ? spread(samples.map(pick)) : nan);
  return {
    source,
    entries,
    runs: samples.length,
    firstRowsMs: of((s) => s.firstRowsMs),
    completeMs: of((s) => s.completeMs),
    longTasks: of((s) => s.longTasks),
    longestTaskMs: of((s) => s.longestTaskMs),
    longFrames: of((s) => s.longFrames),
    longestFrameMs: of((s) => s.longestFrameMs),
    pullMs: pulls.length ? spread(pulls) : undefined,
    pageHeap: peak(samples, 'pageHeap'),
    workerHeap: peak(samples, 'workerHeap'),
    ...(failure ? { failure } : {}),
  };
}

/** The listing's figures as one line (console and Markdown alike), then what surrounds them. */
export function listingLine(l: ListingSummary): string {
  const head = `Layer listing (${l.entries.toLocaleString('en-US')} entries, ${LISTING_SOURCE_LABEL[l.source]})`;
  const t = LISTING_TARGETS;
  const targets = `targets < ${t.firstRowsMs} ms / < ${t.completeMs} ms / ≤ ${t.longestTaskMs} ms`;
  if (l.runs === 0) return `${head}: BROKEN: ${l.failure ?? 'no run'} — ${targets}`;
  /** median, then (min–max) over the runs: `233 ms (196–300)`. */
  const fig = (s: Spread, unit = ''): string =>
    `${s.median.toFixed(0)}${unit}${l.runs > 1 ? ` (${s.min.toFixed(0)}–${s.max.toFixed(0)})` : ''}`;
  const extra = [
    l.runs > 1 ? `${l.runs} runs, median (min–max)` : '1 run',
    `long animation frames ${fig(l.longFrames)}, longest ${fig(l.longestFrameMs, ' ms')}`,
    ...(l.pageHeap !== undefined
      ? [`page heap peak ${mb(l.pageHeap)} MB${l.workerHeap !== undefined ? `, workers ${mb(l.workerHeap)} MB` : ''}`]
      : []),
    ...(l.pullMs ? [`pull before it ${fig(l.pullMs, ' ms')}`] : []),
  ];
  return (
    `${head}: first rows ${fig(l.firstRowsMs, ' ms')}, complete ${fig(l.completeMs, ' ms')}, long tasks ${fig(l.longTasks)}, longest ${fig(l.longestTaskMs, ' ms')} — ${targets} (${extra.join('; ')})` +
    (l.failure ? ` — BROKEN after ${l.runs} run(s): ${l.failure}` : '')
  );
}

const LISTING_NOTE =
  'Listing: a fresh page per run; times in the page\'s clock from the moment the inspector is asked for the image (pulled: the click on "Browse the files" after the pull; archive: the file input\'s change event) ' +
  'to the first entry row in the DOM, and to layer 1 `complete` with the Table view (switched to at first rows, as a person would) showing every entry. ' +
  'Long tasks: Long Tasks API entries (main-thread tasks over 50 ms) overlapping that window, per run; long animation frames (LoAF API, a frame over 50 ms with its rendering) as a cross-check. Layer: GNU tar of 100 directories × 999 empty files, gzip by umoci.';

/** The Markdown section for the listing (appended to the pull table, or alone with --listing-only). */
export function listingMarkdown(listings: readonly ListingSummary[]): string[] {
  return listings.length ? ['', ...listings.map((l) => `- ${listingLine(l)}`), '', LISTING_NOTE] : [];
}

/** --listing-only: the machine and the listing, without the pull table. */
export function listingOnlyMarkdown(machine: Machine, rounds: number, mode: string, listings: readonly ListingSummary[]): string {
  return [
    `### Layer listing, ${machine.date.slice(0, 10)}`,
    '',
    `${rounds} round(s); longshore in headless Chromium (${mode} profile).`,
    '',
    `Machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memTotal} RAM; ${machine.chromium}; node ${machine.node}; ` +
      `load average ${machine.loadAverage.start} at start, ${machine.loadAverage.end ?? '?'} at end.`,
    ...listingMarkdown(listings),
  ].join('\n');
}

export interface MarkdownInput {
  machine: Machine;
  imageLabel: string;
  /** Who serves the image (default: the token registry with blob redirects). */
  served?: string;
  layers: number;
  compressed: Record<string, number>;
  uncompressed: number;
  rounds: number;
  mode: string;
  summaries: readonly Summary[];
  failures: readonly string[];
  notes: readonly string[];
  proxyCost: ProxyCostSummary | undefined;
  /** Layer listing figures, one per source measured (none with --no-listing). */
  listings?: readonly ListingSummary[];
}

export function markdown(m: MarkdownInput): string {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const sizes = Object.entries(m.compressed)
    .map(([v, b]) => `${(b / 1e6).toFixed(0)} MB ${v}`)
    .join(', ');
  const out = [
    `### Benchmark, ${m.machine.date.slice(0, 10)}`,
    '',
    `Image: ${m.imageLabel} preset, ${m.layers} layers of files from /usr/lib and /usr/share (${sizes}; ${(m.uncompressed / 1e6).toFixed(0)} MB uncompressed), ` +
      `${m.served ?? 'served by distribution 2.8 with token auth and blob redirects, on 127.0.0.1'}. ${m.rounds} interleaved round(s); ` +
      `longshore in headless Chromium (${m.mode} profile), cold = empty IndexedDB, warm = second pull in the same profile.`,
    '',
    `Machine: ${m.machine.nproc} CPUs (${m.machine.cpu}), ${m.machine.memTotal} RAM; ${m.machine.chromium}; node ${m.machine.node}; skopeo ${m.machine.skopeo}; ` +
      `load average ${m.machine.loadAverage.start} at start, ${m.machine.loadAverage.end ?? '?'} at end.`,
    '',
    row(COLUMNS.map((c) => c.title)),
    row(COLUMNS.map((_, i) => (i < 2 ? '---' : '---:'))),
    ...m.summaries.map((s) => row(COLUMNS.map((c) => c.cell(s)))),
    ...(m.failures.length || m.notes.length ? ['', ...m.failures.map((f) => `- ${f}`), ...m.notes.map((n) => `- ${n}`)] : []),
    '',
    [
      'Wall: longshore = Pull click → Chromium finished writing the file (the download complete, or for the picked file the page saying Saved; Chromium driven over a bare DevTools pipe, not Playwright, whose network instrumentation costs the page CPU; the file is judged where Chromium wrote it, then removed); skopeo = spawn → exit.',
      'To button: Pull click → Download button (archive composed).',
      'MB/s in: compressed layer bytes ÷ median wall time.',
      "÷ skopeo: longshore median ÷ the skopeo median for the archive kind with the same layer encoding (compressed layers → oci-archive, uncompressed → docker-archive); through a shaping link, ÷ skopeo's `oci:` (its fastest destination, which fetches layers in parallel); issue 14's target for the row in brackets.",
      "File after last byte: seconds from the last layer byte to the file complete, as the relay sent it (--link) / as the page's progress showed every layer full (cold pulls).",
      "Disk GB: the most the free disk fell during the run (shared machine: others' writes count too).",
      'Heap: V8 heap in use on the page, and summed over its workers (the pull worker and its layer workers); buffers: ArrayBuffer backing stores outside the heap; peaks of 200 ms samples.',
      "Peak RSS: sum over Chromium's processes, sampled every 200 ms (PSS in brackets: shared pages counted once, every fifth sample), or the skopeo process; RSS at click: the same sum just before Pull.",
      'Layer reqs (other): layer blob GET/HEADs reaching the registry or its redirect target from the click on (other blobs, i.e. the config, in brackets).',
    ].join(' '),
  ];
  if (m.proxyCost) {
    const p = m.proxyCost;
    out.push(
      '',
      `Proxy cost (largest layer, ${(p.bytes / 1e6).toFixed(0)} MB, fetched by curl): direct ${p.directMBps.toFixed(0)} MB/s ` +
        `(${p.directSpread[0].toFixed(0)}–${p.directSpread[1].toFixed(0)}), through the proxy ${p.proxyMBps.toFixed(0)} MB/s ` +
        `(${p.proxySpread[0].toFixed(0)}–${p.proxySpread[1].toFixed(0)}): ${p.lostPercent.toFixed(0)} % lost; proxy peak RSS ${mb(p.proxyRss)} MB.`,
    );
  }
  out.push(...listingMarkdown(m.listings ?? []));
  return out.join('\n');
}
