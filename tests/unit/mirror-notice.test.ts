// The proxy's mirror headers as the page hears them: parsed into a notice, once per change of who
// serves, and worded for the pull notes.
import { describe, expect, it } from 'vitest';
import { observeRegistry, parseMirror, type RegistryNotice } from '../../src/core/registry/rate-limit.ts';
import { mirrorText } from '../../src/ui/state/rate-limit.svelte.ts';

const served = (by: string, reason?: string) =>
  new Headers({
    'x-longshore-served-by': by,
    'x-longshore-mirror': '127.0.0.1:5001',
    ...(reason ? { 'x-longshore-mirror-fallback': reason } : {}),
  });

describe('mirror notices', () => {
  it('parses the headers, and ignores answers without them or with unknown values', () => {
    expect(parseMirror('r.example', served('mirror'))).toEqual({
      type: 'mirror',
      registry: 'r.example',
      servedBy: 'mirror',
      mirror: '127.0.0.1:5001',
    });
    expect(parseMirror('r.example', served('upstream', 'down'))).toMatchObject({ servedBy: 'upstream', reason: 'down' });
    expect(parseMirror('r.example', served('upstream', 'weird'))).not.toHaveProperty('reason');
    expect(parseMirror('r.example', served('cdn'))).toBeUndefined();
    expect(parseMirror('r.example', new Headers())).toBeUndefined();
  });

  it('reports a change of who serves once, not once per request', async () => {
    const answers = [served('upstream', 'missing'), served('upstream', 'missing'), served('mirror'), served('mirror')];
    const notices: RegistryNotice[] = [];
    const transport = observeRegistry({ fetch: async () => new Response(null, { headers: answers.shift()! }) }, (n) => notices.push(n));
    for (let i = 0; i < 4; i++) await transport.fetch('http://app.test/proxy/r.example/v2/x/manifests/1');
    expect(notices.map((n) => n.type === 'mirror' && n.servedBy)).toEqual(['upstream', 'mirror']);
  });

  it('words each case', () => {
    expect(mirrorText({ type: 'mirror', registry: 'r', servedBy: 'mirror', mirror: 'm:1' })).toBe('r: served by mirror m:1');
    expect(mirrorText({ type: 'mirror', registry: 'r', servedBy: 'upstream', mirror: 'm:1', reason: 'down' })).toBe(
      'r: mirror m:1 down, served by the registry itself (upstream)',
    );
    expect(mirrorText({ type: 'mirror', registry: 'r', servedBy: 'upstream', mirror: 'm:1', reason: 'missing' })).toContain('lacks it');
  });
});
