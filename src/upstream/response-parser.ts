// HTTP/1.1 response parsing for upstream connections: Bun's native llhttp binding, typed.
//
// process.binding("http_parser") is the parser behind node:http in Bun (llhttp, the parser Node ships). It is not a
// documented Bun API, so its shape is checked once here; everything else goes through ResponseParser.

/** What the parser reports; `this` is unused (handlers are bound to their connection once). */
export interface ResponseEvents {
  /**
   * The status line and headers are in. `headers` alternates names and values (latin1 strings, as sent). Return
   * true when the response has no body whatever its headers say (the answer to HEAD).
   */
  onHead(status: number, statusText: string, headers: string[], keepAlive: boolean, upgrade: boolean): boolean;
  /** A piece of the body (chunked framing removed). The parser hands over a fresh buffer each time. */
  onBody(chunk: Uint8Array): void;
  /** The response is complete. */
  onComplete(): void;
}

interface NativeParser {
  initialize(kind: number, resource: object): void;
  execute(data: Uint8Array): number | Error;
  finish(): undefined | Error;
  close(): void;
  [slot: number]: unknown;
}

interface NativeParserClass {
  new (): NativeParser;
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

/** Loaded on first use, so a missing binding is one clear error at start-up (see checkParserAvailable). */
let nativeClass: NativeParserClass | null = null;

function loadNative(): NativeParserClass {
  if (nativeClass !== null) return nativeClass;
  // biome-ignore lint/suspicious/noExplicitAny: process.binding is untyped in bun-types; the shape is checked below.
  const binding = (process as any).binding?.("http_parser") as { HTTPParser?: NativeParserClass } | undefined;
  const candidate = binding?.HTTPParser;
  if (
    candidate === undefined ||
    typeof candidate !== "function" ||
    typeof candidate.kOnHeadersComplete !== "number" ||
    typeof candidate.prototype.execute !== "function"
  ) {
    throw new Error('this Bun has no process.binding("http_parser").HTTPParser, which the HTTP proxy needs');
  }
  nativeClass = candidate;
  return candidate;
}

/** Throws a clear error when the runtime lacks the native parser (called when an upstream is configured). */
export function checkParserAvailable(): void {
  loadNative();
}

/** Why parsing failed: the parser's error code and reason, e.g. "HPE_INVALID_CONSTANT: Expected HTTP/". */
export type ParseError = string;

/** One connection's response parser; it parses response after response on the same connection. */
export class ResponseParser {
  private readonly native: NativeParser;

  constructor(events: ResponseEvents) {
    const Native = loadNative();
    const native = new Native();
    native.initialize(Native.RESPONSE, {});
    native[Native.kOnHeadersComplete] = (
      _versionMajor: number,
      _versionMinor: number,
      headers: string[],
      _method: unknown,
      _url: unknown,
      status: number,
      statusText: string,
      upgrade: boolean,
      keepAlive: boolean,
    ) => (events.onHead(status, statusText, headers, keepAlive, upgrade) ? 1 : 0);
    native[Native.kOnBody] = (chunk: Uint8Array) => events.onBody(chunk);
    native[Native.kOnMessageComplete] = () => events.onComplete();
    this.native = native;
  }

  /** Parses the bytes received; the events fire during the call. Returns null, or why the bytes are not HTTP. */
  execute(data: Uint8Array): ParseError | null {
    const result = this.native.execute(data);
    return typeof result === "number" ? null : describe(result);
  }

  /** The connection ended: completes a response whose body runs until close, or says why it is cut short. */
  finish(): ParseError | null {
    const result = this.native.finish();
    return result === undefined ? null : describe(result);
  }

  close(): void {
    this.native.close();
  }
}

function describe(error: Error): string {
  const code = (error as Error & { code?: string }).code;
  const reason = (error as Error & { reason?: string }).reason;
  return `${code ?? "parse error"}: ${reason ?? error.message}`;
}
