// Worker entry of the custom.handlers check (handlers-probe.ts): loads the module as a pool worker does, answers once.
import { loadUserHandlers } from "../pool/ops.ts";
import type { ProbeAnswer } from "./handlers-probe.ts";

declare const self: Worker;
self.addEventListener("message", async (event: MessageEvent<string>) => {
  let answer: ProbeAnswer;
  try {
    answer = { ok: true, opcodes: [...(await loadUserHandlers(event.data)).keys()] };
  } catch (error) {
    answer = { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
  self.postMessage(answer);
});
