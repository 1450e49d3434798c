// Error answers: small plain-text bodies named by their status, and the result object every answer reports into.

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
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
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
