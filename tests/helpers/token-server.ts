// A token server like Docker Hub's auth.docker.io, on its own origin: the `realm` of the token registry.
// Implements distribution's token authentication (docs/spec/auth/token.md, jwt.md, oauth.md): RS256 JWTs whose
// `x5c` header carries the self-signed certificate that docker-registry trusts as its rootcertbundle.
import { createSign, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface TokenRequestRecord {
  seq: number;
  time: string;
  method: string;
  path: string;
  /** Every query parameter, repeated ones (scope) in order. */
  query: Record<string, string[]>;
  hasAuthorization: boolean;
  /** 'Basic' | 'Bearer' | … when an Authorization header was sent. */
  authorizationScheme: string | null;
  /** The Basic user name, when one was sent. */
  username: string | null;
  /** The caller's User-Agent (an e2e test gives its browser context a unique one to find its own requests). */
  userAgent: string | null;
  status: number;
  /** Access granted, as put in the token. */
  granted: AccessEntry[];
}

export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenServerOptions {
  issuer: string;
  /** PEM private key (RSA) that signs tokens. */
  privateKeyPem: string;
  /** PEM certificate(s) for the key, leaf first; sent as the JWT `x5c` chain. */
  certificatePem: string;
  username?: string;
  password?: string;
  /** Repositories starting with this need credentials; default 'private/'. */
  privatePrefix?: string;
  /** The registries' storage root: lets HUB_TOKEN_PATH see which repositories exist. */
  storageDir?: string;
  expiresIn?: number;
}

/**
 * Paths: `/token` answers `{token, access_token, expires_in, issued_at}`; `/access-token-only/token` answers
 * without `token`, as some OAuth-style servers do. `POST` to either is the OAuth2 password / refresh-token
 * grant (oauth.md). `GET /__harness/requests?since=N` returns the request log as JSON (not itself logged).
 */
export const TOKEN_PATH = '/token';
export const ACCESS_TOKEN_ONLY_PATH = '/access-token-only/token';
/**
 * Answers like auth.docker.io for a repository that does not exist: a token is issued, granting
 * nothing for a pull-only scope, so the registry then answers 401 error="insufficient_scope", just
 * as it does for a private repository (Docker Hub does not tell the two apart).
 */
export const HUB_TOKEN_PATH = '/hub/token';
export const HARNESS_LOG_PATH = '/__harness/requests';

export interface TokenServer {
  origin: string;
  /** `${origin}/token` */
  realm: string;
  /** `${origin}/access-token-only/token` */
  accessTokenOnlyRealm: string;
  /** Live request log, oldest first. */
  readonly requests: TokenRequestRecord[];
  /** Also answer `/token` without the `token` field (the path variant is race-free; prefer it). */
  setAccessTokenOnly(value: boolean): void;
  clearLog(): void;
  close(): Promise<void>;
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function pemToDerBase64(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/g)].map((m) => m[1]!.replace(/\s+/g, ''));
}

/** Parses `repository:NAME:ACTIONS` (NAME may contain ':' for a host port; actions are after the last ':'). */
export function parseScope(scope: string): AccessEntry | null {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last <= first) return null;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

async function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const username = options.username ?? 'alice';
  const password = options.password ?? 'wonderland';
  const privatePrefix = options.privatePrefix ?? 'private/';
  const expiresIn = options.expiresIn ?? 300;
  const x5c = pemToDerBase64(options.certificatePem);
  if (x5c.length === 0) throw new Error('token server: no certificate in certificatePem');
  const requests: TokenRequestRecord[] = [];
  let seq = 0;
  let accessTokenOnly = false;
  // Refresh tokens handed out by the OAuth2 password grant, mapped to their user.
  const refreshTokens = new Map<string, string>();
  const repositoryExists = (name: string): boolean =>
    options.storageDir !== undefined && existsSync(join(options.storageDir, 'docker/registry/v2/repositories', name, '_manifests'));

  const grant = (scopes: string[], user: string | null): AccessEntry[] => {
    const granted: AccessEntry[] = [];
    for (const scope of scopes) {
      const entry = parseScope(scope);
      if (!entry || entry.type !== 'repository') continue;
      const allowed = user !== null ? ['pull', 'push'] : entry.name.startsWith(privatePrefix) ? [] : ['pull'];
      const actions = entry.actions.filter((a) => allowed.includes(a));
      // Like Docker Hub: a token is issued anyway, with no access to what is not allowed; the registry then says 401.
      if (actions.length > 0) granted.push({ type: entry.type, name: entry.name, actions });
    }
    return granted;
  };

  const sign = (service: string, user: string | null, access: AccessEntry[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c };
    const claims = {
      iss: options.issuer,
      sub: user ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(options.privateKeyPem);
    return `${signingInput}.${base64url(signature)}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token.invalid');
    if (url.pathname === HARNESS_LOG_PATH) {
      const since = Number(url.searchParams.get('since') ?? '0');
      sendJson(
        res,
        200,
        requests.filter((r) => r.seq > since),
      );
      return;
    }
    const query: Record<string, string[]> = {};
    for (const [key, value] of url.searchParams) (query[key] ??= []).push(value);
    const authorization = req.headers.authorization ?? null;
    const record: TokenRequestRecord = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      hasAuthorization: authorization !== null,
      authorizationScheme: authorization?.split(' ')[0] ?? null,
      username: null,
      userAgent: req.headers['user-agent'] ?? null,
      status: 0,
      granted: [],
    };
    requests.push(record);
    const reply = (status: number, body: unknown): void => {
      record.status = status;
      sendJson(res, status, body);
    };

    const onlyAccessToken = url.pathname === ACCESS_TOKEN_ONLY_PATH || accessTokenOnly;
    if (url.pathname !== TOKEN_PATH && url.pathname !== ACCESS_TOKEN_ONLY_PATH && url.pathname !== HUB_TOKEN_PATH) {
      reply(404, { details: 'not found' });
      return;
    }

    if (req.method === 'POST') {
      // OAuth2 (oauth.md): application/x-www-form-urlencoded, grant_type password or refresh_token.
      const form = new URLSearchParams(await readBody(req));
      for (const [key, value] of form) (record.query[key] ??= []).push(value);
      const service = form.get('service') ?? '';
      const scopes = form
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter(Boolean);
      let user: string | null;
      let refreshToken: string | undefined;
      if (form.get('grant_type') === 'password') {
        if (form.get('username') !== username || form.get('password') !== password) {
          reply(401, { details: 'incorrect username or password' });
          return;
        }
        user = username;
        if (form.get('access_type') === 'offline') {
          refreshToken = randomUUID();
          refreshTokens.set(refreshToken, user);
        }
      } else if (form.get('grant_type') === 'refresh_token') {
        user = refreshTokens.get(form.get('refresh_token') ?? '') ?? null;
        if (user === null) {
          reply(401, { details: 'invalid refresh token' });
          return;
        }
      } else {
        reply(400, { error: 'unsupported_grant_type' });
        return;
      }
      record.username = user;
      record.granted = grant(scopes, user);
      const token = sign(service, user, record.granted);
      reply(200, {
        access_token: token,
        ...(refreshToken ? { refresh_token: refreshToken } : {}),
        expires_in: expiresIn,
        issued_at: new Date().toISOString(),
        scope: scopes.join(' '),
      });
      return;
    }

    if (req.method !== 'GET') {
      reply(405, { details: 'method not allowed' });
      return;
    }
    let user: string | null = null;
    if (authorization !== null) {
      const match = /^Basic\s+(\S+)$/i.exec(authorization);
      const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
      const colon = decoded.indexOf(':');
      record.username = colon >= 0 ? decoded.slice(0, colon) : null;
      if (colon < 0 || decoded.slice(0, colon) !== username || decoded.slice(colon + 1) !== password) {
        reply(401, { details: 'incorrect username or password' });
        return;
      }
      user = username;
    }
    const service = url.searchParams.get('service') ?? '';
    const scopes = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    record.granted = grant(scopes, user);
    if (url.pathname === HUB_TOKEN_PATH)
      record.granted = record.granted.filter((g) => g.actions.includes('push') || repositoryExists(g.name));
    const token = sign(service, user, record.granted);
    const issuedAt = new Date().toISOString();
    reply(
      200,
      onlyAccessToken
        ? { access_token: token, expires_in: expiresIn, issued_at: issuedAt }
        : { token, access_token: token, expires_in: expiresIn, issued_at: issuedAt },
    );
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { details: String(error) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    origin,
    realm: `${origin}${TOKEN_PATH}`,
    accessTokenOnlyRealm: `${origin}${ACCESS_TOKEN_ONLY_PATH}`,
    requests,
    setAccessTokenOnly(value) {
      accessTokenOnly = value;
    },
    clearLog() {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
