// The whole real-registry environment as one plain async function, for vitest's globalSetup, the benchmark
// script and Playwright alike: registries + token server + static server up, fixtures pushed, truth read back.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildFixtures, type FixtureName, type FixtureTruths } from './fixtures.ts';
import { skopeoEnvironment } from './images.ts';
import { startRegistries, type Registries, type RegistryEnv, type StartRegistriesOptions } from './registries.ts';

/** Everything a test needs to reach the environment; plain JSON. */
export interface HarnessEnv extends RegistryEnv {
  fixtures: FixtureTruths;
  /** Environment for running skopeo against these registries without the machine's auth.json / registries.conf. */
  skopeoEnv: Record<string, string>;
  /** Milliseconds per setup phase. */
  timings: Record<string, number>;
}

export interface Harness {
  env: HarnessEnv;
  registries: Registries;
  stop(): Promise<void>;
}

/** Starts everything; on failure, stops what started and rethrows. */
export async function startHarness(options: StartRegistriesOptions = {}): Promise<Harness> {
  const timings: Record<string, number> = {};
  let mark = performance.now();
  const lap = (phase: string) => {
    const now = performance.now();
    timings[phase] = Math.round(now - mark);
    mark = now;
  };
  const registries = await startRegistries(options);
  lap('registries');
  try {
    const skopeoDir = join(registries.tempDir, 'skopeo');
    const workDir = join(registries.tempDir, 'build');
    await mkdir(workDir, { recursive: true });
    const skopeoEnv = await skopeoEnvironment(skopeoDir);
    const fixtures = await buildFixtures({ host: registries.env.anon.host, workDir, skopeoEnv });
    await rm(workDir, { recursive: true, force: true });
    lap('fixtures');
    const env: HarnessEnv = {
      ...registries.env,
      fixtures,
      skopeoEnv: { REGISTRY_AUTH_FILE: skopeoEnv.REGISTRY_AUTH_FILE!, CONTAINERS_REGISTRIES_CONF: skopeoEnv.CONTAINERS_REGISTRIES_CONF! },
      timings,
    };
    return { env, registries, stop: () => registries.stop() };
  } catch (error) {
    await registries.stop().catch(() => undefined);
    throw error;
  }
}

/** 'HOST/repository:tag' of a fixture on a given registry (all registries serve every fixture). */
export function fixtureRef(env: Pick<HarnessEnv, 'fixtures'>, registry: { host: string }, name: FixtureName): string {
  return `${registry.host}/${env.fixtures[name].path}`;
}

/** Reads a request log over HTTP (the servers live in the globalSetup process), entries after `since`. */
export async function readRequestLog<T extends { seq: number }>(requestLogUrl: string, since = 0): Promise<T[]> {
  const response = await fetch(`${requestLogUrl}?since=${since}`);
  if (!response.ok) throw new Error(`request log ${requestLogUrl}: HTTP ${response.status}`);
  return (await response.json()) as T[];
}

/** The highest sequence number logged so far; take it before an action and pass it as `since` afterwards. */
export async function requestLogMark(requestLogUrl: string): Promise<number> {
  const entries = await readRequestLog<{ seq: number }>(requestLogUrl);
  return entries.at(-1)?.seq ?? 0;
}
