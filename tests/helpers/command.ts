// Runs the independent command-line judges (umoci, skopeo, GNU tar, openssl, htpasswd) and picks free ports.
// Test-only: uses node:* freely.
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: Uint8Array;
}

export class CommandFailedError extends Error {
  override name = 'CommandFailedError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} ${args.join(' ')} failed (exit ${exitCode}): ${stderr.trim().slice(-4000)}`);
  }
}

/** Runs a command without a shell and resolves with its stdout; rejects with its stderr on a non-zero exit. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === 'number' ? error.code : null;
          reject(new CommandFailedError(command, args, code, `${stderr.toString('utf8')}${error.message}`));
          return;
        }
        resolve(stdout);
      },
    );
    if (options.input) child.stdin?.end(options.input);
  });
}

export async function runText(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return (await run(command, args, options)).toString('utf8');
}

/**
 * A port that was free a moment ago on 127.0.0.1. Only for child processes that must be given a port
 * up front (docker-registry); our own servers listen on port 0 instead. Callers retry on a lost race.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('no TCP address'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
