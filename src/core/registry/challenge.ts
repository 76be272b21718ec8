// WWW-Authenticate parsing (RFC 7235 §4.1) as registries send it:
//   Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"
// Quoted values may hold commas and colons (scopes do); several challenges may share one header.

export interface Challenge {
  /** Lower-cased scheme: 'bearer', 'basic', … */
  scheme: string;
  params: Record<string, string>;
}

export function parseChallenges(header: string | null | undefined): Challenge[] {
  if (!header) return [];
  const challenges: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipSpace();
    if (header[i] === ',') {
      i++;
      continue;
    }
    const start = i;
    const token = readToken();
    if (!token) {
      i++; // skip a stray character
      continue;
    }
    skipSpace();
    if (header[i] === '=' && current && !/^=+\s*(,|$)/.test(header.slice(i))) {
      // auth-param: token "=" ( token / quoted-string )
      i++;
      skipSpace();
      let value: string;
      if (header[i] === '"') {
        i++;
        value = '';
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        const vStart = i;
        while (i < n && header[i] !== ',' && header[i] !== ' ') i++;
        value = header.slice(vStart, i);
      }
      current.params[token.toLowerCase()] = value;
    } else if (header[i] === '=') {
      // token68 (e.g. "Negotiate abc=="): keep it whole, we have no use for it.
      while (i < n && header[i] !== ',') i++;
      if (current) current.params['token68'] = header.slice(start, i).trim();
    } else {
      current = { scheme: token.toLowerCase(), params: {} };
      challenges.push(current);
    }
  }
  return challenges;
}

/** Pick the challenge we can answer: Bearer first, then Basic. */
export function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

/** Scopes announced by a challenge, split on spaces (distribution-spec token scope grammar). */
export function challengeScopes(challenge: Challenge): string[] {
  return (challenge.params['scope'] ?? '').split(' ').filter(Boolean);
}

export function repositoryScope(repository: string, actions: string[] = ['pull']): string {
  return `repository:${repository}:${actions.join(',')}`;
}
