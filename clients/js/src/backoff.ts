// Reconnect delays: the C++ client's defaults (docs/PROTOCOL.md, "Client
// backoff"): exponential from 500 ms, x2, capped at 15 s, then +/-25 % jitter
// applied after the cap; unlimited attempts unless `maxAttempts` is set. The
// attempt counter resets once a connection stayed up for `stablePeriodMs`.

export interface BackoffOptions {
  /** First delay (ms). Default 500. */
  initialMs?: number;
  /** Growth per attempt. Default 2. */
  multiplier?: number;
  /** Cap on the delay before jitter (ms). Default 15000. */
  maxMs?: number;
  /** +/- ratio applied after the cap, 0..1. Default 0.25. */
  jitter?: number;
  /** Attempts in one outage before the client stops (`disconnected`). Default: unlimited. */
  maxAttempts?: number;
  /** Uptime after which the attempt counter resets (ms). Default 5000. */
  stablePeriodMs?: number;
}

/** Cap on a server-given `retry_after_ms` (RECONNECT, NACK). */
export const RETRY_AFTER_MAX_MS = 60_000;

export class Backoff {
  readonly initialMs: number;
  readonly multiplier: number;
  readonly maxMs: number;
  readonly jitter: number;
  readonly maxAttempts: number | undefined;
  readonly stablePeriodMs: number;
  /** Retries scheduled in the current outage. */
  attempt = 0;

  constructor(o: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = o.initialMs ?? 500;
    this.multiplier = o.multiplier ?? 2;
    this.maxMs = o.maxMs ?? 15_000;
    this.jitter = o.jitter ?? 0.25;
    this.maxAttempts = o.maxAttempts;
    this.stablePeriodMs = o.stablePeriodMs ?? 5_000;
    const bad = (what: string) => {
      throw new RangeError(`tether: invalid backoff option ${what}`);
    };
    if (!(this.initialMs >= 0)) bad('initialMs');
    if (!(this.multiplier >= 1)) bad('multiplier');
    if (!(this.maxMs >= this.initialMs)) bad('maxMs');
    if (!(this.jitter >= 0 && this.jitter <= 1)) bad('jitter');
    if (this.maxAttempts !== undefined && !(this.maxAttempts >= 1)) bad('maxAttempts');
  }

  /** The delay before the next attempt, or undefined when attempts are exhausted. */
  next(retryAfterMs?: number): number | undefined {
    if (this.maxAttempts !== undefined && this.attempt >= this.maxAttempts) return undefined;
    const n = this.attempt++;
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, RETRY_AFTER_MAX_MS);
    const base = Math.min(this.initialMs * this.multiplier ** n, this.maxMs);
    return Math.round(base * (1 + this.jitter * (2 * this.random() - 1)));
  }

  reset(): void {
    this.attempt = 0;
  }
}
