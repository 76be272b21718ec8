// The proxy's counters in the Prometheus text exposition format (version 0.0.4), served at
// `GET /metrics`: requests by kind and status class, bytes relayed, errors by kind, open
// streams, and upstream latency (request sent → response headers) as a histogram.

/** Upper bounds (seconds) of the upstream latency histogram. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ProxyMetrics {
  readonly #requests = new Map<string, number>();
  readonly #errors = new Map<string, number>();
  readonly #buckets = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  #latencySum = 0;
  #latencyCount = 0;
  #bytes = 0;
  openStreams = 0;

  /** `kind`: registry, realm, preflight or refused; `status`: the status sent to the client. */
  request(kind: string, status: number): void {
    const key = `kind="${kind}",code="${Math.floor(status / 100)}xx"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  error(kind: string): void {
    this.#errors.set(kind, (this.#errors.get(kind) ?? 0) + 1);
  }

  bytes(n: number): void {
    this.#bytes += n;
  }

  upstreamLatency(seconds: number): void {
    this.#latencySum += seconds;
    this.#latencyCount++;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) this.#buckets[i]!++;
  }

  /** The exposition text; `extra` lines (already formatted) are appended, e.g. process memory. */
  render(extra: string[] = []): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string) => lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family('longshore_proxy_requests_total', 'counter', 'Requests under /proxy/ by kind and status class sent to the client.');
    for (const [labels, n] of this.#requests) lines.push(`longshore_proxy_requests_total{${labels}} ${n}`);
    family('longshore_proxy_response_bytes_total', 'counter', 'Body bytes relayed to clients.');
    lines.push(`longshore_proxy_response_bytes_total ${this.#bytes}`);
    family('longshore_proxy_errors_total', 'counter', 'Refusals and failures by kind.');
    for (const [kind, n] of this.#errors) lines.push(`longshore_proxy_errors_total{kind="${kind}"} ${n}`);
    family('longshore_proxy_open_streams', 'gauge', 'Responses whose body is being relayed.');
    lines.push(`longshore_proxy_open_streams ${this.openStreams}`);
    family('longshore_proxy_upstream_latency_seconds', 'histogram', 'Time from sending a request upstream to its response headers.');
    LATENCY_BUCKETS.forEach((le, i) => lines.push(`longshore_proxy_upstream_latency_seconds_bucket{le="${le}"} ${this.#buckets[i]}`));
    lines.push(`longshore_proxy_upstream_latency_seconds_bucket{le="+Inf"} ${this.#latencyCount}`);
    lines.push(`longshore_proxy_upstream_latency_seconds_sum ${this.#latencySum}`);
    lines.push(`longshore_proxy_upstream_latency_seconds_count ${this.#latencyCount}`);
    return `${[...lines, ...extra].join('\n')}\n`;
  }
}
