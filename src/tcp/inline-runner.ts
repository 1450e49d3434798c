// An OpRunner that runs HASH (SHA-256) on the calling thread: used until the worker pool is wired, and in tests.
import type { OpDone, OpRunner } from "../pool/op-runner.ts";
import { FrameStatus, Opcode } from "./frame.ts";

const SHA256_BYTES = 32;
/** Bun's CryptoHasher.digest writes into a caller buffer only when it holds at least 64 bytes. */
const DIGEST_SCRATCH_BYTES = 64;

export class InlineRunner implements OpRunner {
  private readonly hasher = new Bun.CryptoHasher("sha256");
  private readonly digestScratch = new Uint8Array(DIGEST_SCRATCH_BYTES);
  private readonly digestView = this.digestScratch.subarray(0, SHA256_BYTES);

  /** Calls `done` before returning; the result view is reused by the next call. */
  run(opcode: number, payload: Uint8Array, token: number, done: OpDone): void {
    if (opcode !== Opcode.HASH) {
      done(
        token,
        FrameStatus.UNKNOWN_OPCODE,
        new TextEncoder().encode(`opcode ${opcode} is not run by the inline runner`),
      );
      return;
    }
    this.hasher.update(payload);
    this.hasher.digest(this.digestScratch);
    done(token, FrameStatus.OK, this.digestView);
  }

  handles(opcode: number): boolean {
    return opcode === Opcode.HASH;
  }

  pending(): number {
    return 0;
  }
}
