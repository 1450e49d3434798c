// The counters one load-tester thread keeps in a Float64Array the main thread can read while the run lasts.

/** Slots of a thread's tally array (Float64, one writer: the thread; the main thread reads it for progress). */
export const Tally = {
  /** measured requests written */
  sent: 0,
  /** measured requests answered (any outcome) */
  completed: 1,
  ok: 2,
  /** answered with a non-success status (HTTP non-2xx, HPS/1 status != OK) */
  nonOk: 3,
  /** answered with bytes that do not match the request or the framing */
  mismatch: 4,
  /** lost when the connection closed or reset with them outstanding */
  readErrors: 5,
  timeouts: 6,
  /** failed connection attempts (not requests) */
  connectErrors: 7,
  bytesRead: 8,
  bytesWritten: 9,
  /** open model: measured requests that went out more than LATE_SEND_MS after their planned time */
  lateSends: 10,
  /** gauge: requests in flight now */
  inFlight: 11,
  /** every response, warm-up included (progress line) */
  responsesAll: 12,
  /** 1 once measuring has begun */
  recording: 13,
  /** 1 when the thread has finished */
  done: 14,
  /** measured milliseconds (set at the end) */
  measuredMs: 15,
  /** open model: measured requests planned (sent or not) */
  planned: 16,
} as const;
export const TALLY_SLOTS = 20;

/** An open-model send later than this after its planned time counts as late. */
export const LATE_SEND_MS = 10;
