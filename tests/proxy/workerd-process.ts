// The proxy handler inside workerd, as deploy/workerd/config.capnp runs it, but on a loopback
// port with a network service that may reach the loopback test registries. The worker is
// bundled from deploy/workerd/entry.ts with esbuild first (npm run build:worker does the same).
import { spawn, type ChildProcess } from 'node:child_process';
import { build } from 'esbuild';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { closedPort } from './fakes.ts';

const ROOT = resolve(import.meta.dirname, '../..');

export interface WorkerdProcess {
  url: string;
  alive(): boolean;
  output(): string;
  stop(): Promise<void>;
}

export async function startWorkerd(config: Record<string, unknown>): Promise<WorkerdProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'longshore-workerd-'));
  await build({
    entryPoints: [join(ROOT, 'deploy/workerd/entry.ts')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    external: ['node:*'],
    outfile: join(dir, 'worker.js'),
    logLevel: 'warning',
  });
  const port = await closedPort();
  const capnp = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "longshore", worker = .w),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "longshore") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2026-11-01",
  bindings = [ (name = "LONGSHORE_CONFIG_JSON", text = ${JSON.stringify(JSON.stringify({ ...config, listen: { host: '127.0.0.1', port } }))}) ],
  globalOutbound = "internet",
);
`;
  await writeFile(join(dir, 'config.capnp'), capnp);
  const child: ChildProcess = spawn(join(ROOT, 'node_modules/.bin/workerd'), ['serve', join(dir, 'config.capnp')], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const url = `http://127.0.0.1:${port}/`;
  // Ready when it answers /healthz (from the handler itself).
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`workerd exited (${child.exitCode}):\n${output}`);
    const ok = await fetch(`${url}healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`workerd did not answer within 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    alive: () => child.exitCode === null && child.signalCode === null,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
