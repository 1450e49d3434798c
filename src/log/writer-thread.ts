// Log writer thread: the only place log bytes meet write(2), so a slow disk or a pipe nobody reads blocks this
// thread and never an event loop that serves requests.
import { closeSync, writeSync } from "node:fs";
import type { FromWriter, ToWriter } from "./writer-messages.ts";

declare const self: Worker;

/** How long to wait before retrying a write that found a non-blocking descriptor full (EAGAIN). */
const RETRY_WAIT_MS = 5;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Writes all of `bytes` to `fd`, waiting out EAGAIN (stdout or stderr may have been left non-blocking). */
function writeAll(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Atomics.wait(sleeper, 0, 0, RETRY_WAIT_MS);
    }
  }
}

function post(message: FromWriter): void {
  self.postMessage(message);
}

self.onmessage = (event: MessageEvent<ToWriter>) => {
  const message = event.data;
  if (message.kind === "write") {
    try {
      writeAll(message.fd, message.bytes);
      post({ kind: "written", sink: message.sink, error: null });
    } catch (error) {
      post({ kind: "written", sink: message.sink, error: (error as Error).message });
    }
  } else if (message.kind === "close") {
    try {
      closeSync(message.fd);
    } catch {
      // Already closed: nothing is lost, the writes before it were acknowledged one by one.
    }
    post({ kind: "closed", sink: message.sink });
  }
};
