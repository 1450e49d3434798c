// A strict keep-alive HTTP/1.1 client for restart tests: never retries, so a request whose connection closes before
// its response is a failure; reconnects only after a response that said Connection: close.
import { connect, type Socket } from "node:net";

export interface LoopResult {
  ok: number;
  failed: number;
  /** Responses whose status was not 200. */
  bad: number;
  /** One line per failure (what happened, with the request outstanding). */
  failures: string[];
  /** performance.now() of every response, in order of arrival (to see who answered after an event). */
  answeredAtMs: number[];
  /** Connections opened (1 per loop plus one per Connection: close). */
  connections: number;
}

export interface KeepAliveLoops {
  /** Stops sending new requests; resolves once every loop has its last answer (or failure). */
  stop(): Promise<LoopResult>;
  /** Answers so far. */
  answered(): number;
}

/**
 * Starts `count` loops, each sending GET `path` on one keep-alive connection, one request at a time, until stopped
 * or `maxMs` passed (a bound of its own). A connection closed or reset while a request is outstanding is a failure.
 */
export function startKeepAliveLoops(port: number, path: string, count: number, maxMs = 60_000): KeepAliveLoops {
  const result: LoopResult = { ok: 0, failed: 0, bad: 0, failures: [], answeredAtMs: [], connections: 0 };
  const deadlineMs = performance.now() + maxMs;
  let stopping = false;
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  const loop = () =>
    new Promise<void>((resolve) => {
      const open = (): void => {
        result.connections++;
        const socket: Socket = connect(port, "127.0.0.1");
        let buffered = "";
        let outstanding = false;
        let finished = false;
        const finish = (next: "reconnect" | "done"): void => {
          if (finished) return;
          finished = true;
          socket.destroy();
          if (next === "reconnect" && !stopping && performance.now() < deadlineMs) open();
          else resolve();
        };
        const send = (): void => {
          if (stopping || performance.now() >= deadlineMs) {
            finish("done");
            return;
          }
          outstanding = true;
          socket.write(request);
        };
        const fail = (what: string): void => {
          if (outstanding) {
            result.failed++;
            result.failures.push(what);
            outstanding = false;
          }
          finish("reconnect");
        };
        socket.on("connect", send);
        socket.on("data", (chunk) => {
          buffered += chunk.toString("latin1");
          for (;;) {
            const headEnd = buffered.indexOf("\r\n\r\n");
            if (headEnd < 0) return;
            const head = buffered.slice(0, headEnd);
            const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? "0");
            if (buffered.length < headEnd + 4 + length) return;
            buffered = buffered.slice(headEnd + 4 + length);
            outstanding = false;
            result.ok++;
            result.answeredAtMs.push(performance.now());
            if (!head.startsWith("HTTP/1.1 200")) result.bad++;
            if (/\r\nconnection: *close/i.test(head)) {
              finish("reconnect");
              return;
            }
            send();
          }
        });
        socket.on("error", (error) => fail(`${error.message} with a request outstanding`));
        socket.on("close", () => fail("closed with a request outstanding"));
      };
      open();
    });
  const loops = Array.from({ length: count }, loop);
  return {
    answered: () => result.ok,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      return result;
    },
  };
}

/** A port that was free a moment ago (for tests where two processes must bind the same port). */
export async function freePort(): Promise<number> {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}
