// Per-client limits, pure but for the injected clock: a token bucket for the request rate and a
// count of open streams (proxied requests whose body is still being relayed). The client is an
// address string (the socket's, or the last X-Forwarded-For hop behind a trusted nginx).
import type { Limits } from './config.ts';

interface ClientState {
  tokens: number;
  at: number;
  streams: number;
}

/** Remembered clients at most; full buckets with nothing open are forgotten first. */
const MAX_CLIENTS = 10_000;

export class ClientLimits {
  readonly #clients = new Map<string, ClientState>();

  constructor(
    private readonly limits: Pick<Limits, 'clientStreams' | 'clientRequestsPerSecond' | 'clientBurst'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one request from the client's bucket: undefined when allowed, else seconds to wait. */
  take(client: string): number | undefined {
    const { clientRequestsPerSecond: rate, clientBurst } = this.limits;
    if (rate === 0) return undefined;
    const capacity = Math.max(1, clientBurst);
    const state = this.#state(client, capacity);
    const now = this.now();
    state.tokens = Math.min(capacity, state.tokens + ((now - state.at) / 1000) * rate);
    state.at = now;
    if (state.tokens >= 1) {
      state.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil((1 - state.tokens) / rate));
  }

  /** Opens a stream for the client: its release function, or undefined when it has too many. */
  open(client: string): (() => void) | undefined {
    const state = this.#state(client, Math.max(1, this.limits.clientBurst));
    if (this.limits.clientStreams !== 0 && state.streams >= this.limits.clientStreams) return undefined;
    state.streams++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      state.streams--;
    };
  }

  /** Streams open for a client (for tests and metrics). */
  streams(client: string): number {
    return this.#clients.get(client)?.streams ?? 0;
  }

  #state(client: string, capacity: number): ClientState {
    let state = this.#clients.get(client);
    if (!state) {
      if (this.#clients.size >= MAX_CLIENTS) this.#forget();
      state = { tokens: capacity, at: this.now(), streams: 0 };
      this.#clients.set(client, state);
    }
    return state;
  }

  #forget(): void {
    const rate = this.limits.clientRequestsPerSecond;
    const now = this.now();
    for (const [client, state] of this.#clients) {
      const refilled = rate === 0 || state.tokens + ((now - state.at) / 1000) * rate >= this.limits.clientBurst;
      if (state.streams === 0 && refilled) this.#clients.delete(client);
    }
    // Everyone busy: forget the oldest anyway rather than grow without bound.
    while (this.#clients.size >= MAX_CLIENTS) this.#clients.delete(this.#clients.keys().next().value!);
  }
}
