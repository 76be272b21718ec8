// The native peers: `skopeo copy docker://… oci-archive:` (layers kept compressed),
// `… docker-archive:` (layers decompressed, like `docker save`) and `… oci:` (a layout directory:
// skopeo's fastest destination, the only one that fetches layers in parallel), timed from spawn to
// exit, with the peak RSS of the skopeo process sampled from /proc.
import { spawn } from 'node:child_process';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { descendants, Peaks, reapedChildren, startSampling, treeMemory } from './proc.ts';

export type PeerArchive = 'oci-archive' | 'docker-archive' | 'oci';
export const PEER_ARCHIVES: readonly PeerArchive[] = ['oci-archive', 'docker-archive', 'oci'];

/** Bytes under a layout directory's blobs (what it holds of the image). */
async function layoutBytes(dir: string): Promise<number> {
  const blobs = join(dir, 'blobs/sha256');
  let n = 0;
  for (const name of await readdir(blobs)) n += (await stat(join(blobs, name))).size;
  return n;
}

/** The peer cannot do this at all (not a broken run): skopeo 1.9 will not put zstd layers in a docker-archive. */
export class PeerUnsupportedError extends Error {
  override name = 'PeerUnsupportedError';
}

const UNSUPPORTED = [/zstd compression is not supported for docker images/];

export interface PeerRun {
  seconds: number;
  outputBytes: number;
  peakRss: number | undefined;
  /** skopeo's CPU seconds and minor page faults (from the bench process's reaped-children counters). */
  cpuSeconds: number;
  pageFaults: number;
}

export async function skopeoPull(reference: string, archive: PeerArchive, file: string, env: NodeJS.ProcessEnv): Promise<PeerRun> {
  // docker-archive gets the name as its RepoTags, as longshore's archives carry it.
  const destination =
    archive === 'docker-archive' ? `docker-archive:${file}:${reference}` : archive === 'oci' ? `oci:${file}:latest` : `oci-archive:${file}`;
  const args = ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${reference}`, destination];
  const peaks = new Peaks();
  const reaped = reapedChildren();
  const started = performance.now();
  const child = spawn('skopeo', args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid;
  const sampler = startSampling(() => {
    if (pid !== undefined) peaks.see('rss', treeMemory([pid, ...descendants(pid)]).rss || undefined);
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | string>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, signal) => resolve(c ?? signal ?? 'unknown'));
  });
  const seconds = (performance.now() - started) / 1000;
  const after = reapedChildren();
  await sampler.stop();
  const why = UNSUPPORTED.find((re) => re.test(stderr));
  if (code !== 0 && why) throw new PeerUnsupportedError(`skopeo ${archive}: ${why.source}`);
  if (code !== 0) throw new Error(`skopeo ${args.join(' ')} failed (${code}): ${stderr.trim().slice(-2000)}`);
  return {
    seconds,
    outputBytes: archive === 'oci' ? await layoutBytes(file) : (await stat(file)).size,
    peakRss: peaks.values['rss'],
    cpuSeconds: after.cpu - reaped.cpu,
    pageFaults: after.faults - reaped.faults,
  };
}
