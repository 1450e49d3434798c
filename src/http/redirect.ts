// http.redirect_port: a plain-HTTP listener that sends every request to HTTPS, except ACME HTTP-01 challenges.
import { realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Server } from "bun";
import type { Config } from "../config/schema.ts";
import type { ServerContext } from "../context.ts";
import { Refusal } from "../net/admission.ts";
import { Counter } from "../stats/stats.ts";
import { newAccessEntry, type AccessLog } from "./access-log.ts";
import { isInsideRoot } from "./path.ts";
import { errorBodyBytes, errorResponse } from "./status.ts";

/** RFC 8555 §8.3: HTTP-01 challenges are fetched from this path; the token is base64url. */
const ACME_PREFIX = "/.well-known/acme-challenge/";
const ACME_TOKEN = /^[A-Za-z0-9_-]+$/;
/**
 * A Host header whose host can go into a Location header as it is (a DNS name or IPv4 address, or an IPv6 literal),
 * optionally followed by a port; group 1 is the host.
 */
const HOST_HEADER = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?$/;
const TEXT_HEADERS = { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff" } as const;
const NO_HOST_TEXT = "400 Bad Request: a Host header naming this server is needed\n";

export interface RedirectOptions {
  /** The HTTPS port redirects point to (the public listener's bound port). */
  readonly httpsPort: number;
  /** The access log the public listener writes now (it changes with a reload); null when off. */
  accessLog(): AccessLog | null;
  /** The running configuration (http.root for challenges; net.allow/deny through the admission). */
  context(): ServerContext;
}

/** Answers one request on the redirect port: 308 to https://, a challenge file, 400 without a usable Host, 403 denied. */
export class RedirectHandler {
  /** The access log entry, filled per request (AccessLog.write reads it before returning). */
  private readonly logEntry = newAccessEntry();

  constructor(private readonly options: RedirectOptions) {}

  readonly fetch = async (request: Request, server: Server<undefined>): Promise<Response> => {
    const startedMs = performance.now();
    const context = this.options.context();
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const target = pathStart < 0 ? "/" : url.slice(pathStart);
    const peer = server.requestIP(request);
    const clientAddress = peer?.address ?? "-";
    let status: number;
    let bodyBytes = 0;
    let response: Response;
    if (peer !== null && context.admission.admitRequest(clientAddress) !== Refusal.NONE) {
      status = 403;
      response = errorResponse(403);
      bodyBytes = errorBodyBytes(403);
    } else if (target.startsWith(ACME_PREFIX)) {
      ({ status, response, bodyBytes } = await this.challenge(context.config, target, request.method === "HEAD"));
    } else {
      const location = this.location(request.headers.get("host"), target);
      if (location === null) {
        status = 400;
        response = new Response(NO_HOST_TEXT, { status, headers: TEXT_HEADERS });
        bodyBytes = NO_HOST_TEXT.length;
      } else {
        status = 308;
        response = new Response(null, { status, headers: { Location: location } });
      }
    }
    if (request.method === "HEAD") bodyBytes = 0;
    const stats = context.stats;
    stats.httpStatus(status);
    stats.add(Counter.bytesWritten, bodyBytes);
    const durationMicros = Math.round((performance.now() - startedMs) * 1000);
    const accessLog = this.options.accessLog();
    if (accessLog !== null) {
      const entry = this.logEntry;
      entry.timeMs = performance.timeOrigin + startedMs;
      entry.client = clientAddress;
      entry.method = request.method;
      entry.target = target;
      entry.status = status;
      entry.bodyBytes = bodyBytes;
      entry.durationMicros = durationMicros;
      entry.referer = request.headers.get("referer");
      entry.userAgent = request.headers.get("user-agent");
      accessLog.write(entry);
    }
    stats.requestDone(durationMicros);
    return response;
  };

  /** https://<host without its port>[:<https port>]<target>, or null when the Host header is missing or unusable. */
  private location(hostHeader: string | null, target: string): string | null {
    const host = hostHeader === null ? undefined : HOST_HEADER.exec(hostHeader)?.[1];
    if (host === undefined) return null;
    const port = this.options.httpsPort === 443 ? "" : `:${this.options.httpsPort}`;
    return `https://${host}${port}${target}`;
  }

  /**
   * The challenge file http.root/.well-known/acme-challenge/<token> (a token has no dots or slashes), or 404. Like the
   * HTTPS site, it serves a regular file only, and through a symlink only when the link stays inside http.root.
   */
  private async challenge(
    config: Config,
    target: string,
    isHead: boolean,
  ): Promise<{ status: number; response: Response; bodyBytes: number }> {
    const query = target.indexOf("?");
    const token = target.slice(ACME_PREFIX.length, query < 0 ? undefined : query);
    const path = ACME_TOKEN.test(token) ? await challengeFile(config.http.root, token) : null;
    if (path !== null) {
      const bytes = await Bun.file(path).bytes();
      return {
        status: 200,
        response: new Response(isHead ? null : bytes, {
          headers: { ...TEXT_HEADERS, "Content-Length": String(bytes.length), "Cache-Control": "no-store" },
        }),
        bodyBytes: bytes.length,
      };
    }
    return { status: 404, response: errorResponse(404), bodyBytes: errorBodyBytes(404) };
  }
}

/** The real path of the challenge file for `token` when it is a regular file inside `root`; null otherwise. */
async function challengeFile(root: string, token: string): Promise<string | null> {
  try {
    const [realRoot, realPath] = await Promise.all([
      realpath(root),
      realpath(join(root, ".well-known", "acme-challenge", token)),
    ]);
    return isInsideRoot(realPath, realRoot) && (await stat(realPath)).isFile() ? realPath : null;
  } catch {
    return null; // missing, a dangling link, no permission
  }
}

/** The redirect listener: a small Bun.serve on server.bind:http.redirect_port. */
export function startRedirect(config: Config, options: RedirectOptions): Server<undefined> {
  const handler = new RedirectHandler(options);
  return Bun.serve({
    hostname: config.server.bind,
    port: config.http.redirect_port,
    development: false,
    idleTimeout: config.http.keepalive_timeout_s,
    maxRequestBodySize: 64 * 1024,
    fetch: handler.fetch,
    error: () => errorResponse(500),
  });
}
