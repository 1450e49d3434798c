// What a request says about itself: its target, whether it asks to close the connection.

/** The request target (path and query) from Bun's absolute request URL. */
export function targetOf(url: string): string {
  const pathStart = url.indexOf("/", 8);
  return pathStart < 0 ? "/" : url.slice(pathStart);
}

/** Whether a request's Connection header carries the `close` option (RFC 9112 §9.6; a token list, any case). */
export function asksToClose(connection: string | null): boolean {
  if (connection === null) return false;
  if (connection.length === 5) return connection.toLowerCase() === "close";
  return /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}
