// `npm run bench`: longshore in headless Chromium against the native peer (skopeo) on one large
// image served by a real token-auth registry with blob redirects, all on 127.0.0.1. Prints wall
// times, throughput, memory and the proxy's cost; writes them as JSON and a Markdown table.
// Exits non-zero only when a run breaks (a failed pull, an archive that does not verify), never
// because a figure is slow.
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatById } from '../../src/core/formats/index.ts';
import { run } from '../helpers/command.ts';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { chromiumMemory, chromiumRssByKind, HeapProbe } from './chromium-metrics.ts';
import { benchImages, parseSize, pushImage, SHAPES, VARIANTS, type BenchImage, type Shape, type Variant } from './image.ts';
import { DiskWatch } from './disk.ts';
import { AppPage, pageFormats, PullBrowsers, pullAndSave, Sessions, type BenchSave, type SessionMode } from './longshore.ts';
import { describeLink, parseLink, startRelay, type LinkShape, type Relay } from './relay.ts';
import { PEER_ARCHIVES, PeerUnsupportedError, skopeoPull, type PeerArchive } from './peers.ts';
import { chromiumProcesses, descendants, faultCount, Peaks, processUse, startSampling, type ProcessUse } from './proc.ts';
import { measureProxyCost, REPO_ROOT, startProxyProcess, type ProxyCost, type ProxyProcess } from './proxy-metrics.ts';
import {
  consoleTable,
  describeMachine,
  failureLines,
  unsupportedLines,
  listingLine,
  listingOnlyMarkdown,
  loadAverage,
  markdown,
  phaseLines,
  summarise,
  summariseListing,
  summariseProxyCost,
  targetLines,
  type ListingSample,
  type ListingSource,
  type ListingSummary,
  type Sample,
  type Scenario,
} from './table.ts';
import { LISTING_REPOSITORY, LISTING_SOURCES, listingImage, measureListing, pushListingImage, type ListingImage } from './listing.ts';
import { verifyArchive } from './verify.ts';
import { MemoryDumps, memdumpLines } from './memdump.ts';
import { PullTrace, traceLines, type ThreadBusy } from './trace.ts';

const USAGE = `npm run bench -- [options]
  --size 100MB|400MB|1.5GB|6GB  compressed size of the test image (default 400MB; any N MB / N GB works)
  --shape default|big-layer  default: a big base layer and smaller ones; big-layer: one layer of ~87 % of the size, two small ones
  --peers oci-archive,docker-archive,oci
                             skopeo destinations to run (default all; a 6 GB docker-archive alone needs ~30 GB of disk)
  --rounds N                 interleaved rounds (default 3)
  --variants gzip,zstd       layer encodings to run (default both)
  --formats a,b              longshore formats to run (default every format the page offers)
  --incognito                cold runs in new contexts of one browser (IndexedDB in memory) instead of fresh on-disk profiles
  --no-warm                  skip the warm (second, cached) pulls
  --profile                  trace the first cold pull of each format (Chromium tracing) and print busy time per thread
  --memdump                  memory-infra dumps every 2 s during the first cold pull of each format: which allocator grew, per process
  --no-listing               skip the layer-listing measurement (100,000-entry layer; runs after the pull rounds by default)
  --no-proxy-cost            skip the proxy-cost step (curl fetches the largest layer 10 times: 50 GB at 6GB)
  --listing-only             only the layer listing (no big image, pull rounds, skopeo or proxy cost): quick
  --listing-from a,b         where the listed layer comes from: pulled (pulled in the page, the default), archive (local oci-archive), or both
  --save stream|file|blob    longshore saves with the service worker's streamed download (default), the picked file
                             (File System Access, answered from the origin private file system; checked like a download, in the profile's files)
                             or the Blob offered when the pull ends
  --link rate=20MB/s,rtt=40ms[,cut=50MB|cut=90%]
                             put the shaping relay between the registry and both pullers: rate cap per connection, added
                             round-trip time per request, each large blob's first response cut after N bytes, or each
                             blob over 1 MB cut once when N % of it has been served
  --page-query q             appended to the app's URL for the pulls (e.g. ranges=1 or rangesFrom=268435456: see README)
  --help`;

const CACHE_DIR = join(REPO_ROOT, '.cache/bench');
const APP_DIR = join(CACHE_DIR, 'dist');

/** A step the options turned off. */
class SkippedStep extends Error {}

interface Options {
  label: string;
  targetBytes: number;
  shape: Shape;
  peers: PeerArchive[];
  rounds: number;
  variants: Variant[];
  formats: string[] | undefined;
  mode: SessionMode;
  warm: boolean;
  profile: boolean;
  memdump: boolean;
  /** run: after the pull rounds; skip: --no-listing; only: --listing-only. */
  listing: 'run' | 'skip' | 'only';
  /** Measure the proxy's cost on the largest layer (curl direct vs proxied; 10 transfers of it). */
  proxyCost: boolean;
  listingFrom: ListingSource[];
  save: BenchSave;
  link: LinkShape | undefined;
  /** Appended to the app's URL for the pull runs (the page's own settings, e.g. `ranges=1`). */
  pageQuery: string;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '400MB' },
      shape: { type: 'string', default: 'default' },
      peers: { type: 'string', default: PEER_ARCHIVES.join(',') },
      rounds: { type: 'string', default: '3' },
      variants: { type: 'string', default: VARIANTS.join(',') },
      formats: { type: 'string' },
      incognito: { type: 'boolean', default: false },
      'no-warm': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      memdump: { type: 'boolean', default: false },
      'no-listing': { type: 'boolean', default: false },
      'no-proxy-cost': { type: 'boolean', default: false },
      'listing-only': { type: 'boolean', default: false },
      'listing-from': { type: 'string', default: 'pulled' },
      save: { type: 'string', default: 'stream' },
      link: { type: 'string' },
      'page-query': { type: 'string', default: '' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);
  const variants = values.variants
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const v of variants)
    if (!VARIANTS.includes(v as Variant)) throw new Error(`--variants: unknown ${v} (known: ${VARIANTS.join(', ')})`);
  const targetBytes = parseSize(values.size);
  if (!SHAPES.includes(values.shape as Shape)) throw new Error(`--shape: ${SHAPES.join(' or ')}, got ${values.shape}`);
  const peers = values.peers
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const p of peers)
    if (!PEER_ARCHIVES.includes(p as PeerArchive)) throw new Error(`--peers: unknown ${p} (known: ${PEER_ARCHIVES.join(', ')})`);
  if (values['no-listing'] && values['listing-only']) throw new Error('--no-listing and --listing-only exclude each other');
  const listingFrom = values['listing-from']
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  if (listingFrom.length === 0) throw new Error('--listing-from needs pulled, archive or both');
  for (const v of listingFrom)
    if (!LISTING_SOURCES.includes(v as ListingSource))
      throw new Error(`--listing-from: unknown ${v} (known: ${LISTING_SOURCES.join(', ')})`);
  return {
    label: values.size.trim().toUpperCase().replace(/\s+/g, ''),
    targetBytes,
    shape: values.shape as Shape,
    peers: PEER_ARCHIVES.filter((p) => peers.includes(p)),
    rounds,
    variants: variants as Variant[],
    formats: values.formats
      ?.split(',')
      .map((f) => f.trim())
      .filter(Boolean),
    mode: values.incognito ? 'incognito' : 'profile',
    warm: !values['no-warm'],
    profile: values.profile,
    memdump: values.memdump,
    listing: values['listing-only'] ? 'only' : values['no-listing'] ? 'skip' : 'run',
    proxyCost: !values['no-proxy-cost'],
    listingFrom: [...new Set(listingFrom)] as ListingSource[],
    save: ['blob', 'stream', 'file'].includes(values.save)
      ? (values.save as BenchSave)
      : (() => {
          throw new Error(`--save: stream, file or blob, got ${values.save}`);
        })(),
    link: values.link ? parseLink(values.link) : undefined,
    pageQuery: values['page-query'].replace(/^\?/, ''),
  };
}

const t0 = performance.now();
function log(message: string): void {
  console.log(`[bench +${((performance.now() - t0) / 1000).toFixed(0)}s] ${message}`);
}

/**
 * A fresh build of the working tree into .cache/bench/dist (vite takes seconds), served by the
 * benchmark's own server process: what is measured is what src/ says now, and the dist/ that
 * other test runs read is left alone.
 */
async function buildApp(): Promise<{ seconds: number; commit: string; dirty: boolean }> {
  const started = performance.now();
  await run(join(REPO_ROOT, 'node_modules/.bin/vite'), ['build', '--outDir', APP_DIR, '--emptyOutDir', '--logLevel', 'error'], {
    cwd: REPO_ROOT,
  });
  const git = (args: string[]) =>
    run('git', args, { cwd: REPO_ROOT }).then(
      (b) => b.toString('utf8').trim(),
      () => '',
    );
  const commit = await git(['rev-parse', '--short', 'HEAD']);
  const dirty = (await git(['status', '--porcelain', '--', 'src', 'index.html', 'vite.config.ts'])) !== '';
  return { seconds: (performance.now() - started) / 1000, commit, dirty };
}

/** Blob requests seen by the static server (redirect target) and the token registry (its log) since a mark. */
class BlobRequestCounter {
  constructor(
    private readonly harness: Harness,
    private readonly repository: string,
  ) {}

  async mark(): Promise<{ staticSeq: number; logOffset: number }> {
    const requests = this.harness.registries.staticServer.requests;
    return { staticSeq: requests.at(-1)?.seq ?? 0, logOffset: (await stat(this.harness.env.token.logFile)).size };
  }

  /** Static-server paths and registry request lines for blobs since `mark`. */
  async since(mark: { staticSeq: number; logOffset: number }): Promise<{ staticUrls: string[]; registryLines: string[] }> {
    const staticUrls = this.harness.registries.staticServer.requests
      .filter((r) => r.seq > mark.staticSeq && r.url.includes('/blobs/'))
      .map((r) => r.url);
    const file = await open(this.harness.env.token.logFile, 'r');
    let text: string;
    try {
      const size = (await file.stat()).size;
      const buffer = Buffer.alloc(Math.max(0, size - mark.logOffset));
      await file.read(buffer, 0, buffer.length, mark.logOffset);
      text = buffer.toString('utf8');
    } finally {
      await file.close();
    }
    // distribution logs one "response completed" line per request it answered, with its URI.
    const needle = `/v2/${this.repository}/blobs/`;
    const registryLines = text.split('\n').filter((l) => l.includes('response completed') && l.includes(needle));
    return { staticUrls, registryLines };
  }
}

interface Context {
  opts: Options;
  harness: Harness;
  proxy: ProxyProcess;
  sessions: PullBrowsers;
  counter: BlobRequestCounter;
  scratch: string;
  skopeoEnv: NodeJS.ProcessEnv;
  configRaw: string;
  verified: Set<string>;
  timeoutMs: number;
  /** Formats whose cold pull was traced already (--profile traces one each). */
  profiled: Map<string, ThreadBusy[]>;
  /** The shaping relay both pullers go through (--link). */
  relay: Relay | undefined;
  images: Partial<Record<Variant, BenchImage>>;
  disk: DiskWatch;
}

interface LongshoreRunResult {
  sample: Sample;
}

/** One timed pull in `page`, sampled every 200 ms, its file verified and removed afterwards. */
async function timedPull(
  c: Context,
  page: AppPage,
  probe: HeapProbe,
  image: BenchImage,
  reference: string,
  format: string,
  cache: 'cold' | 'warm',
): Promise<LongshoreRunResult> {
  const peaks = new Peaks();
  let mark = await c.counter.mark();
  // Counted from the click: the page's own look-up of the typed name is not part of the pull.
  let cpuAtClick: Record<string, ProcessUse> = {};
  const beforeClick = async (): Promise<void> => {
    cpuAtClick = cpuByGroup(c.proxy.pid);
    mark = await c.counter.mark();
    c.relay?.reset();
    peaks.see('chromiumRssAtStart', chromiumMemory({ pss: false }).rss);
    for (const [kind, rss] of Object.entries(chromiumRssByKind())) peaks.see(`rss.${kind}AtStart`, rss || undefined);
  };
  const heapSamples = { page: 0, worker: 0, workerMissed: 0 };
  let samples = 0;
  const sampler = startSampling(async () => {
    const heap = await probe.read();
    if (heap.page !== undefined) heapSamples.page++;
    if (heap.workers !== undefined) heapSamples.worker++;
    else if (heap.workerCount > 0) heapSamples.workerMissed++;
    peaks.see('workersSeen', heap.workerCount);
    peaks.see('pageHeap', heap.page);
    peaks.see('workerHeap', heap.workers);
    peaks.see('pageBuffers', heap.pageBuffers);
    peaks.see('workerBuffers', heap.workerBuffers);
    for (const [kind, bytes] of Object.entries(heap.buffersByWorker)) peaks.see(`buffers.${kind}`, bytes);
    if (heap.page !== undefined || heap.workers !== undefined) peaks.see('heapSum', (heap.page ?? 0) + (heap.workers ?? 0));
    // RSS every sample; PSS (costly to read, see chromiumMemory) every fifth, so the sampler's
    // own CPU does not slow the pull it measures on a 2-core machine.
    const memory = chromiumMemory({ pss: samples++ % 5 === 0 });
    peaks.see('chromiumRss', memory.rss || undefined);
    peaks.see('chromiumPss', memory.pss || undefined);
    // Per process kind, each kind's own peak: where growth lives (renderer vs browser vs GPU/utility).
    for (const [kind, rss] of Object.entries(chromiumRssByKind())) peaks.see(`rss.${kind}`, rss || undefined);
    peaks.see('proxyRss', c.proxy.rss());
  });
  const profileKey = `${image.variant}/${format}`;
  const trace =
    c.opts.profile && cache === 'cold' && !c.profiled.has(profileKey) ? await PullTrace.start(await page.newSession()) : undefined;
  // Chromium allows one trace at a time: memory dumps only when the CPU trace is off.
  const dumps =
    c.opts.memdump && !trace && cache === 'cold' && !c.profiled.has(profileKey)
      ? await MemoryDumps.start(await page.newSession())
      : undefined;
  let timing;
  const disk = c.disk.open();
  try {
    timing = await pullAndSave(page, reference, format, c.timeoutMs, beforeClick, c.opts.save);
  } finally {
    await sampler.stop();
  }
  const cpuAfter = cpuByGroup(c.proxy.pid);
  const used = Object.entries(cpuAfter).map(([k, v]) => ({
    who: k,
    cpu: Math.max(0, v.cpu - (cpuAtClick[k]?.cpu ?? 0)),
    faults: Math.max(0, v.faults - (cpuAtClick[k]?.faults ?? 0)),
  }));
  // Page faults beside CPU: on a machine where a fault costs ~14 µs (README, Performance), touching
  // fresh memory per byte moved is a large share of the CPU.
  log(
    `CPU during the ${cache} ${format} pull (${timing.downloadedSeconds.toFixed(1)} s wall, 2 cores): ` +
      used.map((u) => `${u.who} ${u.cpu.toFixed(1)} s (${faultCount(u.faults)} page faults)`).join(', '),
  );
  const byWorker = Object.entries(peaks.values).filter(([k]) => k.startsWith('buffers.'));
  if (byWorker.length)
    log(`worker buffers at their peak: ${byWorker.map(([k, v]) => `${k.slice(8)} ${(v / 1e6).toFixed(0)} MB`).join(', ')}`);
  if (dumps) {
    c.profiled.set(profileKey, []);
    for (const line of memdumpLines(`${profileKey} cold`, await dumps.stop())) log(line);
  }
  if (trace) {
    const threads = await trace.stop();
    c.profiled.set(profileKey, threads);
    for (const line of traceLines(`${profileKey} cold`, timing.downloadedSeconds, threads)) log(line);
  }
  const layerHexes = image.layers.map((l) => l.digest.slice(7));
  const isLayer = (text: string) => layerHexes.some((hex) => text.includes(hex));
  // Through the relay, blobs come from the anonymous registry itself (no redirect): the relay counts them.
  const seen = c.relay
    ? {
        staticUrls: [...c.relay.blobs.entries()].flatMap(([d, st]) => Array.from({ length: st.requests }, () => `/blobs/${d}`)),
        registryLines: [] as string[],
      }
    : await c.counter.since(mark);
  const layerRequests = seen.staticUrls.filter(isLayer).length + seen.registryLines.filter(isLayer).length;
  const otherBlobRequests = seen.staticUrls.length + seen.registryLines.length - layerRequests;
  const relayStats = c.relay ? relayFigures(c.relay, image) : undefined;
  if (c.relay && relayStats?.cuts) {
    const cutLayers = image.layers.flatMap((l) => {
      const st = c.relay!.blobs.get(l.digest);
      return st?.cut ? [{ size: l.size, st }] : [];
    });
    log(
      `cut layers of the ${cache} ${format} pull: ` +
        cutLayers
          .map(
            ({ size, st }) =>
              `${(size / 1e6).toFixed(1)} MB in ${st.requests} requests, ${(st.afterCut / 1e6).toFixed(2)} MB by requests after the cut ` +
              `(${((100 * st.afterCut) / size).toFixed(1)} %), ${((st.bytes - size) / 1e6).toFixed(2)} MB twice`,
          )
          .join('; '),
    );
  }
  const complete = timing.clickAt + timing.downloadedSeconds * 1000;
  // From the last layer byte to the file complete: as the relay saw it leave, as the page saw it arrive.
  const tail = {
    ...(relayStats?.lastByteAt ? { relay: (complete - relayStats.lastByteAt) / 1000 } : {}),
    ...(timing.phases['arrived'] !== undefined && cache === 'cold' ? { page: timing.downloadedSeconds - timing.phases['arrived'] } : {}),
  };
  // Each layer should cost one registry GET (answered 307) and one static GET when cold, nothing
  // when warm; through the relay one GET each, plus one per cut.
  const expected = cache === 'cold' ? (c.relay ? image.layers.length + (relayStats?.cuts ?? 0) : 2 * image.layers.length) : 0;
  const unexpected = layerRequests === expected ? undefined : [...seen.registryLines.map((l) => l.slice(0, 400)), ...seen.staticUrls];
  try {
    if (cache === 'cold') {
      const missing = image.layers.filter((l) => !seen.staticUrls.some((u) => u.includes(l.digest.slice(7))));
      if (missing.length > 0)
        throw new Error(`the cold pull did not fetch ${missing.length} layer(s) from the registry: was the cache not empty?`);
    } else if (layerRequests > 0) {
      log(`WARNING: the warm ${format} pull sent ${layerRequests} layer blob request(s) to the registry (expected 0)`);
    }
    const key = `${image.variant}/${format}`;
    const thorough = !c.verified.has(key);
    if (c.opts.save === 'file')
      log(
        timing.file
          ? `the picked file, judged in the profile's files: ${timing.file}`
          : `the picked file: only its size is known (${timing.bytes} bytes)`,
      );
    if (timing.file)
      await verifyArchive(timing.file, { image, configRaw: c.configRaw, skopeoEnv: c.skopeoEnv, thorough, scratchDir: c.scratch });
    else if (!timing.bytes) throw new Error(`the picked file ${timing.fileName} is empty`);
    c.verified.add(key);
    const outputBytes = timing.file ? (await stat(timing.file)).size : (timing.bytes ?? 0);
    return {
      sample: {
        seconds: timing.downloadedSeconds,
        buttonSeconds: timing.buttonSeconds,
        phases: {
          ...timing.phases,
          ...(Number.isNaN(timing.firstByteSeconds) ? {} : { 'file-starts': timing.firstByteSeconds }),
          downloaded: timing.downloadedSeconds,
        },
        outputBytes,
        peaks: { ...peaks.values, disk: disk.close() },
        ...(Object.keys(tail).length ? { tail } : {}),
        heapSamples,
        layerRequests,
        otherBlobRequests,
        ...(relayStats ? { relay: relayStats } : {}),
        ...(unexpected ? { requestLog: unexpected } : {}),
      },
    };
  } finally {
    // Removed as soon as it is judged, so a 6 GB run holds one download at a time.
    if (timing.cleanup) await timing.cleanup();
    else if (timing.file) await rm(timing.file, { force: true });
    disk.close();
  }
}

/** Cold pull in a fresh profile, then (optionally) the warm pull in a new page of the same profile. */
async function longshoreRuns(c: Context, image: BenchImage, reference: string, format: string): Promise<{ cold: Sample; warm?: Sample }> {
  const session = await c.sessions.open();
  try {
    const attachAndOpen = async (): Promise<{ page: AppPage; probe: HeapProbe }> => {
      let probe: HeapProbe | undefined;
      const url = c.opts.pageQuery ? `${c.proxy.url}${c.proxy.url.includes('?') ? '&' : '?'}${c.opts.pageQuery}` : c.proxy.url;
      const page = await AppPage.open(session, url, async (p) => {
        probe = await HeapProbe.attach(await p.newSession());
      });
      return { page, probe: probe! };
    };
    const first = await attachAndOpen();
    const cold = (await timedPull(c, first.page, first.probe, image, reference, format, 'cold')).sample;
    await first.probe.detach();
    await first.page.close();
    if (!c.opts.warm) return { cold };
    const second = await attachAndOpen();
    const warm = (await timedPull(c, second.page, second.probe, image, reference, format, 'warm')).sample;
    await second.probe.detach();
    await second.page.close();
    return { cold, warm };
  } finally {
    await session.close();
  }
}

const SAVE_PATHS: Record<BenchSave, string> = {
  stream: 'the streamed download',
  file: 'the picked file (File System Access)',
  blob: 'the Blob at the end',
};

/**
 * The link the relay shaped, and per scenario the layer bytes fetched through it (medians): all,
 * after cuts (the bytes of requests made after a cut: a resume's remainder, or a whole restart),
 * as a share of the cut layers against the issue's target, and fetched twice (beyond each layer's size).
 */
function linkLines(opts: Options, all: Scenario[]): string[] {
  if (!opts.link) return [];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const lines = [
    `Link (shaping relay between the registry and both pullers): ${describeLink(opts.link)}; longshore saves with ${SAVE_PATHS[opts.save]}${opts.pageQuery ? `; page ?${opts.pageQuery}` : ''}.`,
  ];
  const cutting = opts.link.cutAfter > 0 || opts.link.cutFraction > 0;
  for (const s of all) {
    const r = s.samples.map((x) => x.relay).filter((x) => x !== undefined);
    if (r.length === 0) continue;
    const mb = (pick: (x: (typeof r)[number]) => number) => `${(median(r.map(pick)) / 1e6).toFixed(1)} MB`;
    const cut = r.filter((x) => x.cuts > 0);
    const percent = (x: (typeof r)[number]) => (x.cutBytes > 0 ? (100 * x.afterCut) / x.cutBytes : 0);
    const refetch = cut.length
      ? `refetched after cut ${mb((x) => x.afterCut)} = ${median(cut.map(percent)).toFixed(1)} % of the cut layers (${mb((x) => x.cutBytes)}; ` +
        `worst layer ${Math.max(...cut.map((x) => x.worstPercent)).toFixed(1)} % — target ≤ ${REFETCH_TARGET_PERCENT} % per layer: ${Math.max(...cut.map((x) => x.worstPercent)) <= REFETCH_TARGET_PERCENT ? 'met' : 'not met'}), ` +
        `fetched twice ${mb((x) => x.twice)}`
      : cutting
        ? 'no layer was cut'
        : `after cuts ${mb((x) => x.afterCut)}`;
    lines.push(
      `${s.variant} ${s.tool} ${s.what}${s.cache ? ` ${s.cache}` : ''}: layer bytes fetched ${mb((x) => x.layerBytes)}, ${refetch} (${median(r.map((x) => x.cuts))} cut)`,
    );
  }
  return lines;
}

/**
 * CPU seconds used so far, by who: Chromium (every process of it), the longshore server (the CORS
 * proxy, which a deployment runs on another machine), the other processes this bench started (the
 * registries), and this process (the shaping relay, the DevTools client, the samplers).
 */
function cpuByGroup(proxyPid: number): Record<string, ProcessUse> {
  const chromium = chromiumProcesses();
  const proxy = [proxyPid, ...descendants(proxyPid)];
  const others = descendants(process.pid).filter((p) => !chromium.includes(p) && !proxy.includes(p));
  const sum = (pids: number[]) =>
    pids.map(processUse).reduce((a, b) => ({ cpu: a.cpu + b.cpu, faults: a.faults + b.faults }), { cpu: 0, faults: 0 });
  const own = process.resourceUsage();
  return {
    chromium: sum(chromium),
    proxy: sum(proxy),
    'registry and others': sum(others),
    'bench process (relay, sampling)': { cpu: (own.userCPUTime + own.systemCPUTime) / 1e6, faults: own.minorPageFault },
  };
}

/** Issue 14: a layer cut at 90 % re-fetches ≤ 10 % of it. */
const REFETCH_TARGET_PERCENT = 10;
/** Issue 14: the file complete within 1 s of the last byte arriving. */
const TAIL_TARGET_SECONDS = 1;

/** What the relay served for the image's layers in one run. */
function relayFigures(relay: Relay, image: BenchImage): NonNullable<Sample['relay']> {
  const layers = image.layers.map((l) => ({ layer: l, stats: relay.blobs.get(l.digest) })).filter((x) => x.stats !== undefined);
  const cut = layers.filter((x) => x.stats!.cut);
  return {
    layerBytes: layers.reduce((n, x) => n + x.stats!.bytes, 0),
    afterCut: layers.reduce((n, x) => n + x.stats!.afterCut, 0),
    cuts: cut.length,
    cutBytes: cut.reduce((n, x) => n + x.layer.size, 0),
    worstPercent: Math.max(0, ...cut.map((x) => (100 * x.stats!.afterCut) / x.layer.size)),
    twice: layers.reduce((n, x) => n + Math.max(0, x.stats!.bytes - x.layer.size), 0),
    lastByteAt: Math.max(0, ...layers.map((x) => x.stats!.lastByteAt)),
  };
}

/**
 * The ratio the issue sets for this row, if any. Through a link: cold `docker` against skopeo's
 * `oci:` (its fastest destination), ≤ 1.0× for the default shape (stated for the 400 MB preset)
 * and ≤ 0.6× for the one-big-layer image. On loopback: ≤ 1.5× skopeo for every cold pull.
 */
function ratioTarget(opts: Options, format: string): Scenario['target'] {
  if (!opts.link) return { max: 1.5, why: 'loopback: ≤ 1.5× skopeo' };
  if (format !== 'docker') return undefined;
  return opts.shape === 'big-layer'
    ? { max: 0.6, why: "link, one-big-layer image: cold docker ≤ 0.6× skopeo's oci:" }
    : {
        max: 1.0,
        why: `link, default shape: cold docker ≤ 1.0× skopeo's oci:${opts.label === '400MB' ? '' : ' (stated for the 400MB preset)'}`,
      };
}

async function peerRun(c: Context, reference: string, archive: PeerArchive): Promise<Sample> {
  const file = join(c.scratch, `skopeo-${archive}-${Date.now()}.tar`);
  const disk = c.disk.open();
  try {
    c.relay?.reset();
    const result = await skopeoPull(reference, archive, file, c.skopeoEnv).catch((err: unknown) => {
      // skopeo 1.9 does not retry a blob whose connection was cut: it cannot finish through --link cut=.
      if ((c.relay?.shape.cutAfter || c.relay?.shape.cutFraction) && /unexpected EOF/.test(String(err)))
        throw new PeerUnsupportedError(`skopeo ${archive}: a cut blob is not retried (unexpected EOF)`);
      throw err;
    });
    log(
      `skopeo → ${archive}: ${result.seconds.toFixed(1)} s wall, CPU ${result.cpuSeconds.toFixed(1)} s (${faultCount(result.pageFaults)} page faults)`,
    );
    const image = Object.values(c.images)[0];
    return {
      seconds: result.seconds,
      outputBytes: result.outputBytes,
      peaks: { ...(result.peakRss !== undefined ? { skopeoRss: result.peakRss } : {}), disk: disk.close() },
      ...(c.relay && image ? { relay: relayFigures(c.relay, image) } : {}),
    };
  } finally {
    await rm(file, { force: true, recursive: true });
    disk.close();
  }
}

/**
 * On loopback, compressed-layer formats are compared with oci-archive, uncompressed ones with
 * docker-archive. Through a link, every format is compared with skopeo's fastest destination,
 * `oci:` (the only one that fetches layers in parallel), as issue 14 asks.
 */
function peerFor(format: string, link: boolean): PeerArchive | undefined {
  if (link) return 'oci';
  const known = formatById(format);
  if (!known) return undefined;
  return known.needsUncompressed ? 'docker-archive' : 'oci-archive';
}

interface ListingSetup {
  image: ListingImage;
  /** The image's name on the token registry (pulled source). */
  reference: string;
}

/** The 100,000-entry image (cached), pushed to the token registry when the pulled source runs. */
async function prepareListing(opts: Options, harness: Harness | undefined, skopeoEnv: NodeJS.ProcessEnv): Promise<ListingSetup> {
  const image = await listingImage(CACHE_DIR);
  let reference = '';
  if (opts.listingFrom.includes('pulled')) {
    if (!harness) throw new Error('the pulled listing needs the registry harness');
    reference = `${harness.env.token.host}/${LISTING_REPOSITORY}:latest`;
    log(`pushing the ${image.entries.toLocaleString('en-US')}-entry listing image to ${reference}`);
    await pushListingImage(image, reference, skopeoEnv, harness.env.token.credentials);
  }
  return { image, reference };
}

interface ListingResults {
  summaries: ListingSummary[];
  samples: ListingSample[];
  /** One line per source that broke. */
  failures: string[];
}

/** `rounds` listings per source, interleaved, each in a fresh session and page. A broken run stops its source and is reported; slowness is only printed. */
async function listingRounds(opts: Options, sessions: Sessions, appUrl: string, setup: ListingSetup): Promise<ListingResults> {
  const samples: ListingSample[] = [];
  const failed = new Map<ListingSource, string>();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const source of opts.listingFrom) {
      if (failed.has(source)) continue;
      try {
        const sample = await measureListing({ sessions, appUrl, image: setup.image, reference: setup.reference }, source);
        samples.push(sample);
        log(
          `round ${round} listing (${source}): first rows ${sample.firstRowsMs.toFixed(0)} ms, complete ${sample.completeMs.toFixed(0)} ms, ` +
            `${sample.longTasks} long task(s), longest ${sample.longestTaskMs.toFixed(0)} ms` +
            (sample.pullMs !== undefined ? ` (pull before it ${sample.pullMs.toFixed(0)} ms)` : ''),
        );
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        log(`BROKEN: listing (${source}): ${message}`);
        failed.set(source, message);
      }
    }
  }
  const summaries = opts.listingFrom.map((source) =>
    summariseListing(
      source,
      setup.image.entries,
      samples.filter((s) => s.source === source),
      failed.get(source),
    ),
  );
  return {
    summaries,
    samples,
    failures: summaries.filter((s) => s.failure).map((s) => `listing (${s.source}): BROKEN after ${s.runs} run(s): ${s.failure}`),
  };
}

function listingJson(setup: ListingSetup, results: ListingResults): unknown {
  const { dir: _dir, layoutDir: _layout, ...image } = setup.image;
  return { image, reference: setup.reference, summaries: results.summaries, samples: results.samples };
}

/** --listing-only: the app, the registry (pulled source only), the listing; nothing else. */
async function listingOnly(opts: Options): Promise<void> {
  log('building the app from the working tree');
  const app = await buildApp();
  const storageDir = join(CACHE_DIR, 'registry-storage');
  await mkdir(storageDir, { recursive: true });
  const harness = opts.listingFrom.includes('pulled') ? await startHarness({ storageDir }) : undefined;
  const scratch = await mkdtemp(join(tmpdir(), 'longshore-bench-'));
  let proxy: ProxyProcess | undefined;
  const sessions = new Sessions(opts.mode);
  try {
    const setup = await prepareListing(opts, harness, { ...process.env, ...harness?.env.skopeoEnv });
    proxy = await startProxyProcess({
      registryHosts: harness ? [harness.env.token.host] : [],
      tokenRealms: harness ? [harness.env.tokenServer.realm] : [],
      dir: scratch,
      staticDir: APP_DIR,
    });
    log(`longshore server (pid ${proxy.pid}) at ${proxy.url}`);
    const machine = await describeMachine(undefined);
    const results = await listingRounds(opts, sessions, proxy.url, setup);
    machine.loadAverage.end = loadAverage();
    console.log('');
    for (const l of results.summaries) console.log(listingLine(l));
    const md = listingOnlyMarkdown(
      machine,
      opts.rounds,
      opts.mode === 'profile' ? 'fresh on-disk' : 'incognito (in-memory)',
      results.summaries,
    );
    console.log('');
    console.log(md);
    const jsonFile = join(CACHE_DIR, `results-listing-${machine.date.replace(/:/g, '-').replace(/\..*$/, '')}.json`);
    await writeFile(
      jsonFile,
      `${JSON.stringify({ machine, options: opts, app, listing: listingJson(setup, results), markdown: md }, null, 2)}\n`,
    );
    console.log('');
    log(`results written to ${jsonFile}`);
    if (results.failures.length > 0) throw new Error(`the layer listing broke: ${results.failures.join('; ')}`);
  } finally {
    await sessions.close().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await harness?.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const opts = options();
  if (opts.listing === 'only') {
    await mkdir(CACHE_DIR, { recursive: true });
    return listingOnly(opts);
  }
  const setup: Record<string, number> = {};
  let lap = performance.now();
  const phase = (name: string) => {
    const now = performance.now();
    setup[name] = Math.round(now - lap) / 1000;
    lap = now;
  };
  await mkdir(CACHE_DIR, { recursive: true });
  // Skopeo stages big files in /var/tmp (containers/image), Chromium's profiles and downloads go to the temp directory.
  const disk = new DiskWatch([CACHE_DIR, tmpdir(), '/var/tmp']);
  const wholeRun = disk.open();
  log(`free disk at start: ${(disk.free() / 1e9).toFixed(1)} GB`);
  log('building the app from the working tree');
  const app = await buildApp();
  const imagesStarted = performance.now();
  const found = await benchImages(CACHE_DIR, opts.label, opts.targetBytes, opts.shape, opts.variants);
  const images = {} as Record<Variant, BenchImage>;
  for (const v of opts.variants) images[v] = found[v]!;
  const imageSeconds = (performance.now() - imagesStarted) / 1000;
  // Built (or found in the cache) up front, so a rebuild never lands between measurements.
  const listingImageReady = opts.listing === 'run' ? await listingImage(CACHE_DIR) : undefined;
  phase('image');

  // A registry storage kept between runs: skopeo then skips blobs pushed by an earlier run.
  const storageDir = join(CACHE_DIR, 'registry-storage');
  await mkdir(storageDir, { recursive: true });
  const harness = await startHarness({ storageDir });
  phase('harness');
  const scratch = await mkdtemp(join(tmpdir(), 'longshore-bench-'));
  let proxy: ProxyProcess | undefined;
  let relay: Relay | undefined;
  // Timed pulls over a bare CDP pipe; the listing bench keeps Playwright (it uploads files, types keys).
  const pullBrowsers = new PullBrowsers(opts.mode);
  const sessions = new Sessions(opts.mode);
  try {
    const env = harness.env;
    const skopeoEnv: NodeJS.ProcessEnv = { ...process.env, ...env.skopeoEnv };
    const repository = `bench/image-${opts.label.toLowerCase().replace(/[^a-z0-9.]/g, '')}${opts.shape === 'default' ? '' : `-${opts.shape}`}`;
    const references = {} as Record<Variant, string>;
    for (const variant of opts.variants) {
      references[variant] = `${env.token.host}/${repository}:${variant}`;
      log(`pushing ${variant} to ${references[variant]}`);
      await pushImage(images[variant], references[variant], skopeoEnv, env.token.credentials);
    }
    const listingSetup = listingImageReady ? await prepareListing(opts, harness, skopeoEnv) : undefined;
    if (opts.link) {
      // The registries share one storage: the relay serves the pushed image from the anonymous one
      // (no token, no redirect), so every blob byte passes through the shaped link.
      relay = await startRelay(env.anon.url, opts.link);
      for (const variant of opts.variants) references[variant] = `${relay.host}/${repository}:${variant}`;
      log(`shaping relay at ${relay.host}: ${describeLink(opts.link)}`);
    }
    phase('push');
    proxy = await startProxyProcess({
      registryHosts: [env.token.host, ...(relay ? [relay.host] : [])],
      tokenRealms: [env.tokenServer.realm],
      dir: scratch,
      staticDir: APP_DIR,
    });
    log(`longshore server (pid ${proxy.pid}) at ${proxy.url}`);

    // What the built page offers, default first.
    const probeSession = await pullBrowsers.open();
    const offered = await pageFormats(await AppPage.open(probeSession, proxy.url));
    const { product } = (await probeSession.browser.send('Browser.getVersion')) as { product: string };
    const chromiumVersion = product.split('/')[1];
    await probeSession.close();
    const formats = [offered.selected, ...offered.ids.filter((id) => id !== offered.selected)].filter(
      (id) => !opts.formats || opts.formats.includes(id),
    );
    if (formats.length === 0) throw new Error(`no format to run: the page offers ${offered.ids.join(', ')}`);
    log(`formats offered by the page: ${offered.ids.join(', ')} (default ${offered.selected}); running ${formats.join(', ')}`);
    phase('proxy+page');

    const machine = await describeMachine(chromiumVersion ? `Chromium ${chromiumVersion}` : undefined);
    const first = images[opts.variants[0]!];
    const configRaw = await readFile(join(first.layoutDir, 'blobs/sha256', first.config.digest.slice(7)), 'utf8');
    const c: Context = {
      opts,
      harness,
      proxy,
      sessions: pullBrowsers,
      counter: new BlobRequestCounter(harness, repository),
      scratch,
      skopeoEnv,
      configRaw,
      verified: new Set(),
      profiled: new Map(),
      relay,
      images,
      disk,
      timeoutMs: Math.max(10 * 60_000, (first.compressedBytes / 1e6) * 1000),
    };

    const scenarios = new Map<string, Scenario>();
    const scenario = (s: Omit<Scenario, 'samples'>): Scenario => {
      let found = scenarios.get(s.key);
      if (!found) scenarios.set(s.key, (found = { ...s, samples: [] }));
      return found;
    };
    for (const variant of opts.variants) {
      const image = images[variant];
      for (const format of formats) {
        const peer = peerFor(format, opts.link !== undefined);
        const target = ratioTarget(opts, format);
        scenario({
          key: `${variant}/longshore/${format}/cold`,
          variant,
          tool: 'longshore',
          what: format,
          cache: 'cold',
          ...(peer && opts.peers.includes(peer) ? { peerKey: `${variant}/skopeo/${peer}` } : {}),
          ...(target ? { target } : {}),
          inputBytes: image.compressedBytes,
        });
        if (opts.warm)
          scenario({
            key: `${variant}/longshore/${format}/warm`,
            variant,
            tool: 'longshore',
            what: format,
            cache: 'warm',
            inputBytes: image.compressedBytes,
          });
      }
      for (const archive of opts.peers)
        scenario({ key: `${variant}/skopeo/${archive}`, variant, tool: 'skopeo', what: archive, inputBytes: image.compressedBytes });
    }

    // Interleaved: every scenario once per round, in the same order, so drift in the machine's load spreads over all.
    // A scenario that breaks is recorded, skipped in later rounds, and makes the exit code 1.
    const attempt = async (keys: string[], body: () => Promise<void>): Promise<void> => {
      if (keys.some((k) => scenarios.get(k)?.failure || scenarios.get(k)?.unsupported)) return;
      try {
        await body();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof PeerUnsupportedError) {
          log(`not measurable: ${keys[0]}: ${message}`);
          for (const k of keys) scenarios.get(k)!.unsupported ??= message;
          return;
        }
        log(`BROKEN: ${keys[0]}: ${message}`);
        for (const k of keys) scenarios.get(k)!.failure ??= message;
      }
    };
    for (let round = 1; round <= opts.rounds; round++) {
      for (const variant of opts.variants) {
        const image = images[variant];
        const reference = references[variant];
        for (const format of formats) {
          const coldKey = `${variant}/longshore/${format}/cold`;
          const warmKey = `${variant}/longshore/${format}/warm`;
          await attempt(opts.warm ? [coldKey, warmKey] : [coldKey], async () => {
            const { cold, warm } = await longshoreRuns(c, image, reference, format);
            scenarios.get(coldKey)!.samples.push(cold);
            if (warm) scenarios.get(warmKey)!.samples.push(warm);
            log(
              `round ${round} ${variant} longshore ${format}: cold ${cold.seconds.toFixed(1)} s (button ${cold.buttonSeconds?.toFixed(1)} s)` +
                (warm
                  ? `, warm ${warm.seconds.toFixed(1)} s with ${warm.layerRequests} layer / ${warm.otherBlobRequests} other blob requests`
                  : ''),
            );
          });
        }
        for (const archive of opts.peers) {
          const key = `${variant}/skopeo/${archive}`;
          await attempt([key], async () => {
            const sample = await peerRun(c, reference, archive);
            scenarios.get(key)!.samples.push(sample);
            log(`round ${round} ${variant} skopeo → ${archive}: ${sample.seconds.toFixed(1)} s`);
          });
        }
      }
    }

    // The layer listing of a 100,000-entry layer, after the pulls (its own rounds, fresh pages).
    const listing = listingSetup ? await listingRounds(opts, sessions, proxy.url, listingSetup) : undefined;

    // The proxy's own cost on the largest layer, direct vs proxied, interleaved.
    const largest = first.layers.reduce((a, b) => (b.size > a.size ? b : a));
    const proxyPeaks = new Peaks();
    const proxySampler = startSampling(() => proxyPeaks.see('rss', proxy!.rss()));
    let proxyRaw: ProxyCost | undefined;
    let proxyFailure: string | undefined;
    try {
      if (!opts.proxyCost) throw new SkippedStep();
      proxyRaw = await measureProxyCost(
        {
          registryUrl: env.token.url,
          registryHost: env.token.host,
          repository,
          digest: largest.digest,
          size: largest.size,
          realm: env.tokenServer.realm,
          service: env.token.service,
        },
        proxy.url,
        Math.max(5, opts.rounds),
      );
    } catch (err) {
      if (!(err instanceof SkippedStep)) {
        proxyFailure = `proxy cost: BROKEN: ${err instanceof Error ? err.message : String(err)}`;
        log(proxyFailure);
      }
    } finally {
      await proxySampler.stop();
    }
    const proxyCost =
      proxyRaw && summariseProxyCost(proxyRaw.bytes, proxyRaw.directSeconds, proxyRaw.proxySeconds, proxyPeaks.values['rss']);
    phase('runs');

    machine.loadAverage.end = loadAverage();
    const all = [...scenarios.values()];
    const summaries = summarise(all);
    console.log('');
    console.log(consoleTable(summaries));
    console.log('');
    for (const line of phaseLines(summaries)) console.log(`  phases: ${line}`);
    if (listing) {
      console.log('');
      for (const l of listing.summaries) console.log(listingLine(l));
    }
    const failures = [...failureLines(all), ...(proxyFailure ? [proxyFailure] : []), ...(listing?.failures ?? [])];
    const diskPeak = wholeRun.close();
    const notes = [
      ...unsupportedLines(all),
      ...linkLines(opts, all),
      ...targetLines(summaries, TAIL_TARGET_SECONDS),
      `Image ${opts.label} ${opts.shape}: ${first.layers.length} layers, the biggest ${((100 * Math.max(...first.layers.map((l) => l.size))) / first.compressedBytes).toFixed(0)} % of ${(first.compressedBytes / 1e6).toFixed(0)} MB; ` +
        `${imageSeconds >= 1 ? `built or extended in ${imageSeconds.toFixed(0)} s` : 'from the cache'}. Disk: this run took at most ${(diskPeak / 1e9).toFixed(1)} GB beyond what was used at its start ` +
        `(largest single run ${(Math.max(0, ...all.flatMap((x) => x.samples.map((y) => y.peaks['disk'] ?? 0))) / 1e9).toFixed(1)} GB; the image layout and registry storage stay in .cache/bench).`,
    ];
    for (const line of notes) console.log(`  ${line}`);
    for (const line of failures) console.log(`  ${line}`);
    const md = markdown({
      machine,
      imageLabel: opts.shape === 'default' ? opts.label : `${opts.label} ${opts.shape}`,
      layers: first.layers.length,
      compressed: Object.fromEntries(opts.variants.map((v) => [v, images[v].compressedBytes])),
      uncompressed: first.uncompressedBytes,
      rounds: opts.rounds,
      mode: opts.mode === 'profile' ? 'fresh on-disk' : 'incognito (in-memory)',
      summaries,
      failures,
      // The phases (file-starts: when the streamed download began) belong with the figures.
      notes: [...notes, ...phaseLines(summaries).map((l) => `phases: ${l}`)],
      proxyCost,
      ...(opts.link ? { served: 'served by distribution 2.8 (anonymous, no redirect) through the shaping relay below, on 127.0.0.1' } : {}),
      ...(listing ? { listings: listing.summaries } : {}),
    });
    console.log('');
    console.log(md);
    const stamp = machine.date.replace(/:/g, '-').replace(/\..*$/, '');
    const jsonFile = join(CACHE_DIR, `results-${stamp}.json`);
    await writeFile(
      jsonFile,
      `${JSON.stringify(
        {
          machine,
          options: opts,
          app,
          setupSeconds: setup,
          image: Object.fromEntries(opts.variants.map((v) => [v, { ...images[v], manifestRaw: undefined, layoutDir: undefined }])),
          summaries,
          proxyCost: proxyCost ? { ...proxyCost, raw: proxyRaw } : null,
          scenarios: all,
          ...(c.profiled.size ? { profiles: Object.fromEntries(c.profiled) } : {}),
          ...(listing && listingSetup ? { listing: listingJson(listingSetup, listing) } : {}),
          markdown: md,
        },
        null,
        2,
      )}\n`,
    );
    console.log('');
    log(`results written to ${jsonFile}`);
    if (failures.length > 0) throw new Error(`${failures.length} run(s) broke (see above)`);
  } finally {
    await sessions.close().catch(() => undefined);
    await pullBrowsers.close().catch(() => undefined);
    await proxy?.close().catch(() => undefined);
    await relay?.close();
    await harness.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
    disk.stop();
  }
}

process.once('SIGINT', () => process.exit(130));
main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`[bench] BROKEN RUN: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
    process.exit(1);
  },
);
