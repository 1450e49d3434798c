// A change made in two phases across several parts: every part prepares (checks and builds what the change needs,
// changing nothing); only when all could does each commit, in order; when one cannot, the others abort.

/** A part's prepared change. commit swaps it in and cannot fail; abort drops what prepare built. */
export interface PreparedChange {
  commit(): void | Promise<void>;
  abort(): void | Promise<void>;
}

/** Prepares one part's change: rejects (or throws), changing nothing, when the part cannot take it. */
export type PrepareStep = () => PreparedChange | Promise<PreparedChange>;

/** A part with nothing to change. */
export const NO_CHANGE: PreparedChange = Object.freeze({ commit() {}, abort() {} });

/** Every part prepared: commit or abort them all, once. */
export interface PreparedAll {
  /** Commits every part in the order of the steps, each after the previous one has finished. */
  commit(): Promise<void>;
  /** Aborts every part, last first. */
  abort(): Promise<void>;
}

/**
 * How the steps prepare: "in-turn", one after the other, the first failure leaving the rest unasked (a later step
 * may be dearer, e.g. a message to every I/O thread); "at-once", all together, for peers of one kind (the threads).
 */
export type PrepareOrder = "in-turn" | "at-once";

/**
 * Prepares every step. When all succeed, returns their changes to commit (or abort) together; when one fails, aborts
 * the ones that succeeded (last first) and rejects with the first failure in step order.
 */
export async function prepareAll(steps: readonly PrepareStep[], order: PrepareOrder = "in-turn"): Promise<PreparedAll> {
  const prepared: PreparedChange[] = [];
  let failure: { reason: unknown } | null = null;
  if (order === "in-turn") {
    for (const step of steps) {
      try {
        prepared.push(await step());
      } catch (reason) {
        failure = { reason };
        break;
      }
    }
  } else {
    const results = await Promise.allSettled(steps.map((step) => Promise.resolve().then(step)));
    for (const result of results) {
      if (result.status === "fulfilled") prepared.push(result.value);
      else failure ??= { reason: result.reason };
    }
  }
  const abortAll = async (): Promise<void> => {
    // Each on its own: one abort that fails does not keep the others from releasing what they built.
    for (const change of prepared.toReversed()) {
      await Promise.resolve()
        .then(() => change.abort())
        .catch(() => {});
    }
  };
  if (failure !== null) {
    await abortAll();
    throw failure.reason;
  }
  let settled = false;
  return {
    async commit() {
      if (settled) return;
      settled = true;
      for (const change of prepared) await change.commit();
    },
    async abort() {
      if (settled) return;
      settled = true;
      await abortAll();
    },
  };
}
