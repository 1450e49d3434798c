// `hps probe [URL]`: one GET with a short timeout; exit 0 on a 2xx answer. For health checks where no curl exists
// (the container image has no shell): HEALTHCHECK CMD ["hps", "probe", "http://127.0.0.1:9090/livez"].

export const DEFAULT_PROBE_URL = "http://127.0.0.1:9090/livez";
const PROBE_TIMEOUT_MS = 2000;

/** Requests `url`; resolves with 0 (2xx) or 1, and a line saying what happened. */
export async function probe(url: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<{ code: number; line: string }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
    await response.arrayBuffer();
    const ok = response.status >= 200 && response.status < 300;
    return { code: ok ? 0 : 1, line: `${url}: ${response.status} ${response.statusText}` };
  } catch (error) {
    const reason =
      (error as Error).name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : (error as Error).message;
    return { code: 1, line: `${url}: ${reason}` };
  }
}
