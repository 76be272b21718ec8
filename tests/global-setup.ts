// vitest globalSetup: starts the real registries, token and static servers once per run, pushes the fixtures,
// and provides their plain description to tests as `inject('registryEnv')`. Other runners (bench, Playwright)
// call `startHarness()` directly.
import type { TestProject } from 'vitest/node';
import { startHarness, type HarnessEnv } from './helpers/harness.ts';

export { fixtureRef, readRequestLog, requestLogMark, startHarness, type Harness, type HarnessEnv } from './helpers/harness.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    registryEnv: HarnessEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = performance.now();
  const harness = await startHarness();
  const { timings } = harness.env;
  console.log(
    `[global-setup] registries ${timings.registries} ms, fixtures ${timings.fixtures} ms, total ${Math.round(performance.now() - started)} ms ` +
      `(anon ${harness.env.anon.host}, token ${harness.env.token.host}, basic ${harness.env.basic.host})`,
  );
  project.provide('registryEnv', harness.env);
  return async () => {
    await harness.stop();
  };
}
