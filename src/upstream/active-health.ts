// Active health checks: GET health_check_path on every server of a group each health_check_interval_s, on a
// connection of its own; 2xx or 3xx is healthy. A failing server gets no requests until a check passes again.
import { ResponseParser } from "./response-parser.ts";
import type { UpstreamServer } from "./server.ts";

/** What one check found. */
export interface CheckResult {
  readonly isHealthy: boolean;
  /** "status 200", "status 503", "ECONNREFUSED", "timed out after 2000 ms", "not an HTTP response: ...". */
  readonly detail: string;
}

/** One GET to `server`, answered within `timeoutMs` or failed. Never rejects. */
export function checkServer(server: UpstreamServer, path: string, timeoutMs: number): Promise<CheckResult> {
  return new Promise<CheckResult>((resolve) => {
    let isSettled = false;
    let socket: import("bun").Socket<undefined> | null = null;
    const settle = (isHealthy: boolean, detail: string) => {
      if (isSettled) return;
      isSettled = true;
      clearTimeout(timer);
      socket?.terminate();
      resolve({ isHealthy, detail });
    };
    const timer = setTimeout(() => settle(false, `timed out after ${timeoutMs} ms`), timeoutMs);
    const parser = new ResponseParser({
      onHead: (status) => {
        if (status >= 100 && status < 200) return false;
        settle(status >= 200 && status < 400, `status ${status}`);
        return true;
      },
      onBody: () => {},
      onComplete: () => {},
    });
    const host = server.host.includes(":") ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
    const request = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: hps-health-check\r\nConnection: close\r\n\r\n`;
    Bun.connect({
      hostname: server.host,
      port: server.port,
      socket: {
        open(opened) {
          socket = opened;
          if (isSettled) opened.terminate();
          else opened.write(request);
        },
        data(_socket, chunk) {
          const problem = parser.execute(chunk);
          if (problem !== null) settle(false, `not an HTTP response: ${problem}`);
        },
        close() {
          settle(false, "closed without a response");
        },
        error(_socket, error) {
          settle(false, (error as { code?: string }).code ?? error.message);
        },
        connectError(_socket, error) {
          settle(false, (error as { code?: string }).code ?? error.message);
        },
      },
    }).catch((error: unknown) => settle(false, (error as { code?: string }).code ?? String(error)));
  });
}
