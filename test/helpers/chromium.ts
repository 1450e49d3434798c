// Headless Chromium driven over the DevTools protocol: open a page, evaluate expressions in it, close everything.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./common.ts";

/** Debian's chromium (apt-get install -y chromium), or null when none is installed. */
export const CHROMIUM = Bun.which("chromium") ?? Bun.which("chromium-browser") ?? Bun.which("google-chrome");

/** Minimal Chrome DevTools Protocol client over the page's WebSocket. */
export class DevTools {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  /** Console errors, uncaught exceptions and failed loads the page reported since watchProblems. */
  readonly problems: string[] = [];

  private constructor(private readonly socket: WebSocket) {
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as {
        id?: number;
        method?: string;
        params?: {
          entry?: { level: string; text: string; url?: string };
          exceptionDetails?: { text: string; exception?: { description?: string } };
          type?: string;
          args?: unknown[];
        };
        result?: unknown;
        error?: { message: string };
      };
      if (message.id === undefined) {
        const { entry, exceptionDetails, type, args } = message.params ?? {};
        if (entry?.level === "error") this.problems.push(`${entry.text} ${entry.url ?? ""}`);
        else if (exceptionDetails !== undefined)
          this.problems.push(exceptionDetails.exception?.description ?? exceptionDetails.text);
        else if (message.method === "Runtime.consoleAPICalled" && type === "error")
          this.problems.push(JSON.stringify(args));
        return;
      }
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result);
    };
  }

  static async connect(url: string): Promise<DevTools> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`cannot open DevTools socket ${url}`));
    });
    return new DevTools(socket);
  }

  call(method: string, params: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`DevTools ${method} timed out`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Collects into `problems` what the page reports from now on (reload the page to see its first requests too). */
  async watchProblems(): Promise<void> {
    await this.call("Log.enable", {});
    await this.call("Runtime.enable", {});
  }

  /** Evaluates an expression in the page and returns its JSON value. */
  async evaluate<T>(expression: string): Promise<T> {
    const result = (await this.call("Runtime.evaluate", { expression, returnByValue: true })) as {
      result: { value: T };
    };
    return result.result.value;
  }

  close(): void {
    this.socket.close();
  }
}

export interface BrowserPage {
  readonly devtools: DevTools;
  /** Closes the DevTools socket, stops the browser (by PID) and removes its profile. */
  close(): Promise<void>;
}

/** Opens `url` in a headless Chromium of its own and connects to the page (bounded: 25 s in all). */
export async function openInChromium(url: string): Promise<BrowserPage> {
  if (CHROMIUM === null) throw new Error("no chromium found (install Debian's chromium: apt-get install -y chromium)");
  const profile = mkdtempSync(join(tmpdir(), "hps-chromium-"));
  const browser = Bun.spawn(
    [
      CHROMIUM,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
      "--disable-quic",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "--window-size=1280,900",
      url,
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  let devtools: DevTools | null = null;
  const close = async () => {
    devtools?.close();
    browser.kill();
    await Promise.race([browser.exited, Bun.sleep(5000)]);
    if (browser.exitCode === null) browser.kill("SIGKILL");
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    // Chromium writes "<port>\n<browser path>" here once DevTools listens.
    const portFile = join(profile, "DevToolsActivePort");
    let devtoolsPort = 0;
    await waitFor(
      () => {
        if (!existsSync(portFile)) return false;
        devtoolsPort = Number(readFileSync(portFile, "utf8").split("\n")[0]);
        return devtoolsPort > 0;
      },
      15_000,
      "chromium to open its DevTools port",
    );
    let pageSocketUrl = "";
    await waitFor(
      async () => {
        const targets = (await (await fetch(`http://127.0.0.1:${devtoolsPort}/json/list`)).json()) as {
          type: string;
          url: string;
          webSocketDebuggerUrl: string;
        }[];
        pageSocketUrl =
          targets.find((target) => target.type === "page" && target.url.startsWith(url.split("#")[0]!))
            ?.webSocketDebuggerUrl ?? "";
        return pageSocketUrl !== "";
      },
      10_000,
      "the page target",
    );
    devtools = await DevTools.connect(pageSocketUrl);
    return { devtools, close };
  } catch (error) {
    await close();
    throw error;
  }
}
