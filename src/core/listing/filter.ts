// The path filter of the inspector: a plain substring (case-insensitive), or a glob when the text
// has `*`, `?` or `[`. A glob without '/' matches the base name ("*.so"); with '/' it matches the
// whole path from the root ("/usr/lib/**/*.so"). `*` and `?` stay within one segment, `**` does not.

export type PathFilter = (path: string) => boolean;

function globSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // "**/" also matches no directory at all.
        if (glob[i + 2] === '/') {
          out += '(?:.*/)?';
          i += 2;
        } else {
          out += '.*';
          i++;
        }
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) out += '\\[';
      else {
        let body = glob.slice(i + 1, close);
        const negate = body.startsWith('!') || body.startsWith('^');
        if (negate) body = body.slice(1);
        out += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
        i = close;
      }
    } else out += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return out;
}

/** Compile the filter text; undefined when it filters nothing. Paths are clean relative paths. */
export function compileFilter(text: string): PathFilter | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  if (/[*?[]/.test(t)) {
    if (t.includes('/')) {
      const re = new RegExp(`^${globSource(t.replace(/^\/+/, ''))}$`);
      return (path) => re.test(path);
    }
    const re = new RegExp(`^${globSource(t)}$`);
    return (path) => re.test(path.slice(path.lastIndexOf('/') + 1));
  }
  const needle = t.toLowerCase();
  return (path) => `/${path}`.toLowerCase().includes(needle);
}
