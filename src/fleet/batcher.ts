// Collects the addresses that need a word with Redis and sends them together: one call in flight at a time.
//
// Whatever is queued while a call is out rides in the next one, so the busier the thread, the more each call carries
// (a hot thread makes a few calls per round trip, not one per request), and a slow Redis sees one outstanding call per
// thread instead of a growing pile.

/** Addresses sent in one script call at most (a call's work in Redis stays short: other clients wait behind it). */
export const MAX_KEYS_PER_CALL = 256;

/** An item the batcher can hold: it marks itself queued so it is never in the queue twice. */
export interface Batchable {
  queued: boolean;
}

export class Batcher<T extends Batchable> {
  private queue: T[] = [];
  private spare: T[] = [];
  private sending = false;
  private scheduled = false;
  private readonly send: (items: readonly T[]) => Promise<void>;
  private readonly canSend: () => boolean;

  /**
   * `send` makes the call for a batch and applies its answer; it must not reject (a failed call is its to handle).
   * `canSend`: false while Redis is unavailable (the queue is then dropped: see drop).
   */
  constructor(send: (items: readonly T[]) => Promise<void>, canSend: () => boolean) {
    this.send = send;
    this.canSend = canSend;
  }

  /** Queues `item` (once) and makes sure a call goes out soon: at the end of this turn of the event loop. */
  add(item: T): void {
    if (item.queued) return;
    item.queued = true;
    this.queue.push(item);
    if (!this.sending && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.pump);
    }
  }

  /** Forgets everything queued (Redis went down: what they wanted is decided otherwise now). */
  drop(): void {
    for (const item of this.queue) item.queued = false;
    this.queue.length = 0;
  }

  /** Resolves once nothing is queued or in flight (for a clean stop); bounded by the link's timeout per call. */
  async settle(): Promise<void> {
    while ((this.sending || this.queue.length > 0) && this.canSend()) {
      if (!this.sending) await this.pumpOnce();
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private readonly pump = (): void => {
    this.scheduled = false;
    if (this.sending) return;
    void this.pumpOnce();
  };

  private async pumpOnce(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0 && this.canSend()) {
        // Swap the queue out so items queued during the call land in a fresh array.
        let batch = this.queue;
        if (batch.length > MAX_KEYS_PER_CALL) {
          this.queue = batch.slice(MAX_KEYS_PER_CALL);
          batch = batch.slice(0, MAX_KEYS_PER_CALL);
        } else {
          this.queue = this.spare;
        }
        for (const item of batch) item.queued = false;
        await this.send(batch);
        batch.length = 0;
        this.spare = batch;
      }
      if (!this.canSend()) this.drop();
    } finally {
      this.sending = false;
    }
  }
}
