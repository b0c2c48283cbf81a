/**
 * A bounded-frequency runner, as kube-proxy's: triggers that arrive while a
 * pass runs are coalesced into one follow-up pass; a pass runs at least every
 * `resyncMs`; a pass that fails, or leaves resources not READY, is retried
 * with exponential backoff from `retryMinMs` up to `resyncMs`.
 */
import type { Logger } from 'pino';

export interface RunnerOptions {
  /** Milliseconds between passes when nothing triggers one (the resync interval). */
  resyncMs: number;
  /** Milliseconds at least between the end of one pass and the start of the next. Default 50. */
  minIntervalMs?: number;
  /** First retry delay in milliseconds after an unhealthy pass. Default 500. */
  retryMinMs?: number;
}

/** What a pass reports back: whether the kernel is converged. */
export interface PassOutcome {
  healthy: boolean;
}

export class Runner {
  private timer: NodeJS.Timeout | undefined;
  private dueAt = 0;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private failures = 0;
  private readonly minIntervalMs: number;
  private readonly retryMinMs: number;

  constructor(
    private readonly pass: () => Promise<PassOutcome>,
    private readonly opts: RunnerOptions,
    private readonly log: Logger,
  ) {
    this.minIntervalMs = opts.minIntervalMs ?? 50;
    this.retryMinMs = opts.retryMinMs ?? 500;
  }

  /** Runs the first pass and resolves when it is done (whatever its outcome). */
  async start(): Promise<void> {
    await this.runNow();
  }

  /** Asks for a pass soon. Cheap; many calls while one is pending give one pass. */
  trigger(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (!this.running) this.schedule(this.minIntervalMs);
  }

  /** Stops scheduling and waits for the pass in flight, if any, to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Resolves after the next pass that starts after this call has finished. */
  async settle(): Promise<void> {
    this.dirty = true;
    await this.running;
    await this.runNow();
  }

  /**
   * Arranges a pass in `delayMs`, unless one is already due sooner: a stream
   * of triggers must not keep pushing the next pass (or the resync) away.
   */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const due = Date.now() + delayMs;
    if (this.timer !== undefined && this.dueAt <= due) return;
    clearTimeout(this.timer);
    this.dueAt = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runNow();
    }, delayMs);
    this.timer.unref?.();
  }

  private runNow(): Promise<void> {
    if (this.running) {
      this.dirty = true;
      return this.running;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = false;
    this.running = (async () => {
      let healthy = false;
      try {
        healthy = (await this.pass()).healthy;
      } catch (err) {
        this.log.error({ err }, 'reconcile pass failed');
      }
      this.failures = healthy ? 0 : this.failures + 1;
    })().finally(() => {
      this.running = undefined;
      if (this.stopped) return;
      if (this.dirty) this.schedule(this.minIntervalMs);
      else if (this.failures > 0) {
        this.schedule(Math.min(this.opts.resyncMs, this.retryMinMs * 2 ** (this.failures - 1)));
      } else this.schedule(this.opts.resyncMs);
    });
    return this.running;
  }
}
