// `npm start`'s server (node --import tsx src/proxy/serve.ts) as a child process, as it runs in
// production: config file + LONGSHORE_* variables, JSON log lines on stdout. The tests judge
// whether the process stays up, what it logs, and what clients get.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { RequestLogEntry } from '../../src/proxy/log.ts';
import { withMallocTunables } from '../../src/proxy/serve.ts';

const ROOT = resolve(import.meta.dirname, '../..');

export interface ProxyProcess {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  child: ChildProcess;
  /** Request log lines so far. */
  logs(): RequestLogEntry[];
  /** Everything the process wrote to stderr. */
  stderr(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

export async function startProxyProcess(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<ProxyProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'longshore-proxy-process-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>longshore</title>');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/proxy/serve.ts'], {
    cwd: ROOT,
    // As `npm start` runs it (its malloc settings included).
    env: withMallocTunables({
      ...process.env,
      VITEST: '',
      LONGSHORE_CONFIG: join(dir, 'config.json'),
      LONGSHORE_PORT: '0',
      LONGSHORE_STATIC_DIR: dir,
      ...env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onData = (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(stdout);
      if (match) resolveUrl(match[1]!);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`proxy exited (${code}) before listening:\n${stderr}`)));
  });
  return {
    url,
    child,
    logs: () =>
      stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as RequestLogEntry),
    stderr: () => stderr,
    alive: () => child.exitCode === null && child.signalCode === null,
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
