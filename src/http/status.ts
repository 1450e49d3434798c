// Answers' common parts: plain-text error bodies named by their status, the Date value, the summary they report into.

const STATUS_TEXT: Record<number, string> = {
  301: "Moved Permanently",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  412: "Precondition Failed",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  /** nginx's status for a client that closed its connection before the answer: never sent, only counted and logged. */
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** A small plain-text error response (never a stack trace). `extra` headers are added to the defaults. */
export function errorResponse(status: number, extra?: Record<string, string>): Response {
  const text = `${status} ${STATUS_TEXT[status] ?? "Error"}\n`;
  return new Response(text, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff", ...extra },
  });
}

/** Byte length of an error body built by errorResponse (for byte counters and the access log). */
export function errorBodyBytes(status: number): number {
  return `${status} ${STATUS_TEXT[status] ?? "Error"}\n`.length;
}

/**
 * What the code that built a response says about it, for the counters and the access log: written by whoever builds
 * the answer (the site, a refusal), read by the handler right after. One object per handler is reused for every
 * request, so reporting allocates nothing.
 */
export class ResponseSummary {
  status = 200;
  /** Body bytes sent: 0 for HEAD, 204 and 304. */
  bodyBytes = 0;

  set(status: number, bodyBytes: number): void {
    this.status = status;
    this.bodyBytes = bodyBytes;
  }
}

let dateSecond = -1;
let dateText = "";

/** The Date header value for now (RFC 9110 §5.6.7 IMF-fixdate), formatted once per second. */
export function httpDateNow(): string {
  const nowMs = Date.now();
  const second = Math.floor(nowMs / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** errorResponse, reported into `summary` (no body bytes for HEAD). */
export function errorAnswer(
  summary: ResponseSummary,
  status: number,
  isHead: boolean,
  extra?: Record<string, string>,
): Response {
  summary.set(status, isHead ? 0 : errorBodyBytes(status));
  return errorResponse(status, extra);
}
