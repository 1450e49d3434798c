// Bun's native llhttp binding as a response parser, typed: the reference the proxy's own parser (response-parser.ts)
// is measured against (bench/micro/upstream.bench.ts) and checked against, response for response
// (test/upstream/response-parser.test.ts).
//
// process.binding("http_parser") is the parser behind node:http in Bun (llhttp, the parser Node ships). It is not a
// documented Bun API, so its shape is checked once here.
import type { ResponseEvents } from "./response-parser.ts";

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

/** Loaded on first use. */
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
    throw new Error('this Bun has no process.binding("http_parser").HTTPParser');
  }
  nativeClass = candidate;
  return candidate;
}

/** Why parsing failed: the parser's error code and reason, e.g. "HPE_INVALID_CONSTANT: Expected HTTP/". */
export type ParseError = string;

/** One connection's response parser; it parses response after response on the same connection. */
export class NativeResponseParser {
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
