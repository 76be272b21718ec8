import { describe, expect, it } from 'vitest';
import { batched, describeTarget, redactQuery } from '../../src/proxy/log.ts';
import { ProxyMetrics } from '../../src/proxy/metrics.ts';

describe('request log redaction', () => {
  it.each([
    ['', ''],
    ['?', ''],
    ['?n=10&last=v1', '?n=10&last=v1'],
    [
      '?service=registry.docker.io&scope=repository:library/alpine:pull',
      '?service=registry.docker.io&scope=repository%3Alibrary%2Falpine%3Apull',
    ],
    ['?account=alice&service=x', '?account=REDACTED&service=x'],
    [
      '?access_token=abc&refresh_token=def&password=p&X-Amz-Signature=s',
      '?access_token=REDACTED&refresh_token=REDACTED&password=REDACTED&X-Amz-Signature=REDACTED',
    ],
  ])('%s → %s', (query, expected) => {
    expect(redactQuery(query)).toBe(expected);
  });

  it('splits the registry from the path', () => {
    expect(describeTarget('/proxy/ghcr.io/v2/a/b/manifests/latest', '?token=t')).toEqual({
      registry: 'ghcr.io',
      path: '/v2/a/b/manifests/latest?token=REDACTED',
    });
    expect(describeTarget('/proxy/ghcr.io', '')).toEqual({ registry: 'ghcr.io', path: '/' });
  });
});

describe('metrics', () => {
  it('renders the Prometheus text format', () => {
    const m = new ProxyMetrics();
    m.request('registry', 200);
    m.request('registry', 206);
    m.request('refused', 403);
    m.error('denied');
    m.bytes(1234);
    m.upstreamLatency(0.2);
    m.upstreamLatency(3);
    const text = m.render(['x 1']);
    expect(text).toContain('longshore_proxy_requests_total{kind="registry",code="2xx"} 2\n');
    expect(text).toContain('longshore_proxy_requests_total{kind="refused",code="4xx"} 1\n');
    expect(text).toContain('longshore_proxy_errors_total{kind="denied"} 1\n');
    expect(text).toContain('longshore_proxy_response_bytes_total 1234\n');
    expect(text).toContain('longshore_proxy_upstream_latency_seconds_bucket{le="0.25"} 1\n');
    expect(text).toContain('longshore_proxy_upstream_latency_seconds_bucket{le="5"} 2\n');
    expect(text).toContain('longshore_proxy_upstream_latency_seconds_bucket{le="+Inf"} 2\n');
    expect(text).toContain('longshore_proxy_upstream_latency_seconds_count 2\n');
    expect(text).toMatch(/# TYPE longshore_proxy_upstream_latency_seconds histogram\n/);
    expect(text.endsWith('x 1\n')).toBe(true);
  });
});

describe('batched writes', () => {
  it('joins writes into one until the timer or the batch size, and flushes the rest on demand', async () => {
    const writes: string[] = [];
    const out = batched((text) => writes.push(text), 20);
    out.write('a\n');
    out.write('b\n');
    expect(writes).toEqual([]);
    await expect.poll(() => writes).toEqual(['a\nb\n']);
    for (let i = 0; i < 256; i++) out.write('x');
    expect(writes).toEqual(['a\nb\n', 'x'.repeat(256)]);
    out.write('tail');
    out.flush();
    expect(writes.at(-1)).toBe('tail');
  });
});
