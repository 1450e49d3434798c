// "host:port" or "[ipv6]:port" (upstream servers): checked by the schema, parsed when an upstream group is built.

export interface HostPort {
  /** Host name or IP address (an IPv6 address without its brackets). */
  readonly host: string;
  readonly port: number;
}

/** Parses "127.0.0.1:9001", "app.internal:80" or "[::1]:9001"; returns a sentence saying what is wrong instead. */
export function parseHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":")
      return 'must look like "[::1]:9001" (an IPv6 address in brackets, then :port)';
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!/^[0-9a-fA-F:.]+$/.test(host) || !host.includes(":")) return "must have an IPv6 address inside the brackets";
  } else {
    const colon = text.lastIndexOf(":");
    if (colon <= 0) return 'must look like "host:port" (e.g. "127.0.0.1:9001"; IPv6 as "[::1]:9001")';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":")) return 'must write an IPv6 address in brackets: "[::1]:9001"';
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return "must have a host name or IPv4 address before the colon";
  }
  if (!/^\d{1,5}$/.test(portText)) return "must end with a port number (:1 to :65535)";
  const port = Number(portText);
  if (port < 1 || port > 65535) return "must end with a port number (:1 to :65535)";
  return { host, port };
}
