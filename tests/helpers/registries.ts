// Real CNCF distribution (`docker-registry` 2.8) processes on 127.0.0.1 sharing one filesystem storage root:
// anonymous, bearer-token (realm and blob redirects on two other origins) and htpasswd basic auth.
// No blobdescriptor cache, so every instance sees blobs pushed through another at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runText } from './command.ts';
import { STATIC_HARNESS_LOG_PATH, startStaticServer, type StaticServer } from './static-server.ts';
import { HARNESS_LOG_PATH, startTokenServer, type TokenServer } from './token-server.ts';

export interface Credentials {
  username: string;
  password: string;
}

export interface RegistryInfo {
  name: 'anon' | 'token' | 'tokenAccessOnly' | 'basic';
  /** '127.0.0.1:PORT', as in an image reference. */
  host: string;
  /** 'http://127.0.0.1:PORT' */
  url: string;
  /** Where this registry's log goes (text formatter). */
  logFile: string;
}

export interface TokenRegistryInfo extends RegistryInfo {
  name: 'token' | 'tokenAccessOnly';
  realm: string;
  service: string;
  issuer: string;
  /** Credentials the token server accepts (pull + push everywhere). */
  credentials: Credentials;
}

export interface BasicRegistryInfo extends RegistryInfo {
  name: 'basic';
  realm: string;
  credentials: Credentials;
}

/** Plain data (no functions), so it can cross vitest's `provide`/`inject` and a Playwright config. */
export interface RegistryEnv {
  /** The one filesystem storage root every registry serves. */
  storageDir: string;
  anon: RegistryInfo & { name: 'anon' };
  /** Realm `${tokenServer.origin}/token`; blob GETs answer 307 to `staticServer.origin`. */
  token: TokenRegistryInfo & { name: 'token' };
  /** Same as `token`, but its realm answers `access_token` without `token`. */
  tokenAccessOnly: TokenRegistryInfo & { name: 'tokenAccessOnly' };
  basic: BasicRegistryInfo;
  tokenServer: {
    origin: string;
    realm: string;
    accessTokenOnlyRealm: string;
    credentials: Credentials;
    /** GET (optionally `?since=SEQ`) → TokenRequestRecord[] as JSON. */
    requestLogUrl: string;
  };
  staticServer: {
    origin: string;
    /** GET (optionally `?since=SEQ`) → StaticRequestRecord[] as JSON. */
    requestLogUrl: string;
  };
}

export interface Registries {
  env: RegistryEnv;
  /** In-process handles with live request logs (only in the process that started them). */
  tokenServer: TokenServer;
  staticServer: StaticServer;
  tempDir: string;
  stop(): Promise<void>;
}

export interface StartRegistriesOptions {
  /** Use this storage root instead of a fresh one in the temp dir (it is then not deleted by stop()). */
  storageDir?: string;
  tokenCredentials?: Credentials;
  basicCredentials?: Credentials;
  /** Whether the static server answers 400 to requests carrying Authorization (default true, like S3). */
  staticRejectsAuthorization?: boolean;
}

const TOKEN_SERVICE = 'longshore-token-registry';
const TOKEN_ISSUER = 'longshore-test-token-issuer';
const BASIC_REALM = 'longshore-basic';

type Yaml = string | number | boolean | Yaml[] | { [key: string]: Yaml };

/** Just enough YAML for registry configs: block maps and lists, every string double-quoted (JSON escapes are YAML escapes). */
function toYaml(value: Yaml, indent = ''): string {
  if (Array.isArray(value)) {
    return value
      .map((item) => {
        const body = typeof item === 'object' ? toYaml(item, `${indent}  `).trimStart() : scalar(item);
        return `${indent}- ${body}`;
      })
      .join('\n');
  }
  if (typeof value === 'object') {
    return Object.entries(value)
      .map(([key, item]) =>
        typeof item === 'object' ? `${indent}${key}:\n${toYaml(item, `${indent}  `)}` : `${indent}${key}: ${scalar(item)}`,
      )
      .join('\n');
  }
  return `${indent}${scalar(value)}`;
}

function scalar(value: string | number | boolean): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

// Children still running if the process exits without stop() (a crashed run must not leak registries).
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL');
    });
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

async function logTail(logFile: string, lines = 30): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

interface RunningRegistry {
  port: number;
  child: ChildProcess;
  logFile: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `docker-registry serve` with the config `makeConfig(port)` and waits until it logs "listening on" and
 * answers GET /v2/ with 200 or 401. Retries with another port if the one picked was taken meanwhile.
 */
async function startRegistryProcess(name: string, dir: string, makeConfig: (port: number) => Yaml): Promise<RunningRegistry> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configFile = join(dir, `${name}.yml`);
    const logFile = join(dir, `${name}.log`);
    await writeFile(configFile, `${toYaml(makeConfig(port))}\n`);
    const fd = openSync(logFile, 'w');
    const child = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    trackChild(child);
    let exited: number | string | null = null;
    let spawnError: Error | null = null;
    child.once('exit', (code, signal) => (exited = code ?? signal));
    child.once('error', (error) => (spawnError = error));

    const deadline = Date.now() + 15_000;
    let ready = false;
    while (Date.now() < deadline && exited === null && spawnError === null) {
      // The log line first: until our process has bound the port, a reply could come from whoever raced us to it.
      if ((await readFile(logFile, 'utf8')).includes(`listening on 127.0.0.1:${port}`)) {
        const status = await fetch(`http://127.0.0.1:${port}/v2/`)
          .then((r) => r.status)
          .catch(() => 0);
        if (status === 200 || status === 401) {
          ready = true;
          break;
        }
      }
      await sleep(25);
    }
    if (ready) return { port, child, logFile };
    child.kill('SIGKILL');
    const tail = await logTail(logFile);
    if (attempt < 3 && /address already in use/.test(tail)) continue;
    const why = spawnError
      ? `could not run docker-registry: ${String(spawnError)}`
      : exited !== null
        ? `exited (${exited})`
        : 'not ready within 15 s';
    throw new Error(`registry "${name}" ${why}; config ${configFile}; log tail:\n${tail}`);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

export async function startRegistries(options: StartRegistriesOptions = {}): Promise<Registries> {
  const tempDir = await mkdtemp(join(tmpdir(), 'longshore-registries-'));
  const storageDir = options.storageDir ?? join(tempDir, 'storage');
  await mkdir(storageDir, { recursive: true });
  const tokenCredentials = options.tokenCredentials ?? { username: 'alice', password: 'wonderland' };
  const basicCredentials = options.basicCredentials ?? { username: 'bob', password: 'builder' };
  const children: ChildProcess[] = [];
  let tokenServer: TokenServer | undefined;
  let staticServer: StaticServer | undefined;

  const stop = async (): Promise<void> => {
    await Promise.all([...children.map(stopChild), tokenServer?.close(), staticServer?.close()]);
    await rm(tempDir, { recursive: true, force: true });
  };

  try {
    const keyFile = join(tempDir, 'token-signing.key');
    const certFile = join(tempDir, 'token-signing.crt');
    const htpasswdFile = join(tempDir, 'htpasswd');
    await Promise.all([
      runText('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-subj',
        `/CN=${TOKEN_ISSUER}`,
      ]),
      runText('htpasswd', ['-Bbn', basicCredentials.username, basicCredentials.password]).then((line) => writeFile(htpasswdFile, line)),
    ]);
    const [privateKeyPem, certificatePem] = await Promise.all([readFile(keyFile, 'utf8'), readFile(certFile, 'utf8')]);
    [tokenServer, staticServer] = await Promise.all([
      startTokenServer({
        issuer: TOKEN_ISSUER,
        privateKeyPem,
        certificatePem,
        username: tokenCredentials.username,
        password: tokenCredentials.password,
        storageDir,
      }),
      startStaticServer({ root: storageDir, rejectAuthorization: options.staticRejectsAuthorization ?? true }),
    ]);

    // One secret for all, so an upload started on one instance could be finished on another.
    const secret = randomBytes(16).toString('hex');
    const base = (name: string, port: number): { [key: string]: Yaml } => ({
      version: '0.1',
      log: { level: 'info', formatter: 'text', fields: { service: 'registry', instance: name } },
      storage: {
        filesystem: { rootdirectory: storageDir },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret, headers: { 'X-Content-Type-Options': ['nosniff'] } },
      health: { storagedriver: { enabled: false } },
    });
    const tokenConfig = (name: string, realm: string) => (port: number) => ({
      ...base(name, port),
      auth: { token: { realm, service: TOKEN_SERVICE, issuer: TOKEN_ISSUER, rootcertbundle: certFile } },
      // Blob GET/HEAD → 307 to baseurl + storage path (registry/storage/driver/middleware/redirect).
      middleware: { storage: [{ name: 'redirect', options: { baseurl: `${staticServer!.origin}/` } }] },
    });
    const ts = tokenServer;
    const started = await Promise.allSettled([
      startRegistryProcess('anon', tempDir, (port) => base('anon', port)),
      startRegistryProcess('token', tempDir, tokenConfig('token', ts.realm)),
      startRegistryProcess('token-access-only', tempDir, tokenConfig('token-access-only', ts.accessTokenOnlyRealm)),
      startRegistryProcess('basic', tempDir, (port) => ({
        ...base('basic', port),
        auth: { htpasswd: { realm: BASIC_REALM, path: htpasswdFile } },
      })),
    ]);
    for (const result of started) if (result.status === 'fulfilled') children.push(result.value.child);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const [anon, token, tokenAccessOnly, basic] = started.map((result) => (result as PromiseFulfilledResult<RunningRegistry>).value) as [
      RunningRegistry,
      RunningRegistry,
      RunningRegistry,
      RunningRegistry,
    ];
    const info = (r: RunningRegistry) => ({ host: `127.0.0.1:${r.port}`, url: `http://127.0.0.1:${r.port}`, logFile: r.logFile });
    const tokenInfo = { service: TOKEN_SERVICE, issuer: TOKEN_ISSUER, credentials: tokenCredentials };
    const env: RegistryEnv = {
      storageDir,
      anon: { name: 'anon', ...info(anon) },
      token: { name: 'token', ...info(token), realm: ts.realm, ...tokenInfo },
      tokenAccessOnly: { name: 'tokenAccessOnly', ...info(tokenAccessOnly), realm: ts.accessTokenOnlyRealm, ...tokenInfo },
      basic: { name: 'basic', ...info(basic), realm: BASIC_REALM, credentials: basicCredentials },
      tokenServer: {
        origin: ts.origin,
        realm: ts.realm,
        accessTokenOnlyRealm: ts.accessTokenOnlyRealm,
        credentials: tokenCredentials,
        requestLogUrl: `${ts.origin}${HARNESS_LOG_PATH}`,
      },
      staticServer: { origin: staticServer.origin, requestLogUrl: `${staticServer.origin}${STATIC_HARNESS_LOG_PATH}` },
    };
    return { env, tokenServer, staticServer, tempDir, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}
