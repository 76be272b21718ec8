// Keeps the one-way arrows honest: ui → browser → core; proxy stands alone; core is
// runtime-neutral (no DOM, no Svelte, no IndexedDB, no node:*), so it runs in a Worker and in Node.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';

const root = resolve(import.meta.dirname, '..');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|svelte)$/.test(name) ? [p] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [
    ...text.matchAll(
      /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g,
    ),
  ]
    .map((m) => m[1] ?? m[2] ?? m[3]!)
    .filter(Boolean);
}

/** Which layer of src/ an import lands in ('external' for packages). */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) return spec.startsWith('node:') ? 'node' : `pkg:${spec.split('/')[0]}`;
  const abs = resolve(dirname(file), spec);
  return relative(join(root, 'src'), abs).split('/')[0]!;
}

const layers = {
  core: files(join(root, 'src/core')),
  browser: files(join(root, 'src/browser')),
  ui: files(join(root, 'src/ui')),
  proxy: files(join(root, 'src/proxy')),
};

describe('architecture', () => {
  it('has code in every layer', () => {
    for (const [name, list] of Object.entries(layers)) expect(list.length, name).toBeGreaterThan(0);
  });

  it('core imports only core and runtime-neutral packages', () => {
    const allowedPackages = new Set(['pkg:hash-wasm', 'pkg:fflate', 'pkg:fzstd']);
    const bad = layers.core.flatMap((f) =>
      imports(f)
        .filter((s) => {
          const t = target(f, s);
          return t !== 'core' && !allowedPackages.has(t);
        })
        .map((s) => `${relative(root, f)} imports ${s}`),
    );
    expect(bad).toEqual([]);
  });

  it('core touches no DOM, IndexedDB, storage or Node globals', () => {
    const forbidden = /\b(document|window|indexedDB|localStorage|sessionStorage|navigator|Buffer|process)\s*[.[(]/;
    const bad = layers.core
      .filter((f) =>
        forbidden.test(
          readFileSync(f, 'utf8')
            .replace(/\/\/.*$/gm, '')
            .replace(/\/\*[\s\S]*?\*\//g, ''),
        ),
      )
      .map((f) => relative(root, f));
    expect(bad).toEqual([]);
  });

  it('browser adapters import core, never ui or proxy', () => {
    const bad = layers.browser.flatMap((f) =>
      imports(f)
        .filter((s) => ['ui', 'proxy'].includes(target(f, s)) || target(f, s).startsWith('pkg:svelte'))
        .map((s) => `${relative(root, f)} imports ${s}`),
    );
    expect(bad).toEqual([]);
  });

  it('ui never imports the proxy', () => {
    const bad = layers.ui.flatMap((f) =>
      imports(f)
        .filter((s) => target(f, s) === 'proxy')
        .map((s) => `${relative(root, f)} imports ${s}`),
    );
    expect(bad).toEqual([]);
  });

  it('the proxy stands alone (only core/errors.ts and core/net/destination.ts from core)', () => {
    const bad = layers.proxy.flatMap((f) =>
      imports(f)
        .filter((s) => {
          const t = target(f, s);
          return ['ui', 'browser'].includes(t) || (t === 'core' && !s.endsWith('core/errors.ts') && !s.endsWith('core/net/destination.ts'));
        })
        .map((s) => `${relative(root, f)} imports ${s}`),
    );
    expect(bad).toEqual([]);
  });

  it('no worker starts a worker: the page starts every one (layer-host.ts)', () => {
    // Firefox ESR under WebDriver BiDi sometimes never returns from `new Worker()` called in a
    // worker, freezing it with its IndexedDB transactions open (README, "Browser support").
    const entries = layers.browser.filter((f) => readFileSync(f, 'utf8').includes('/// <reference lib="webworker" />'));
    expect(entries.map((f) => relative(root, f))).toContain('src/browser/worker.ts');
    const seen = new Set<string>();
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const spec of imports(file)) if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
    };
    entries.forEach(walk);
    const bad = [...seen]
      .filter((f) =>
        /\bnew\s+(Shared)?Worker\s*\(/.test(
          readFileSync(f, 'utf8')
            .replace(/\/\/.*$/gm, '')
            .replace(/\/\*[\s\S]*?\*\//g, ''),
        ),
      )
      .map((f) => relative(root, f));
    expect(bad).toEqual([]);
  });
});
