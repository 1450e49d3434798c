// Rules that span the elements of [[upstreams]] and [[http.routes]] and the settings naming them (proxy.upstream):
// checked with the rest of the schema, each problem at the path of the element at fault ("upstreams[1].servers[0]").
import type { z } from "zod";
import { parseHostPort } from "./host-port.ts";

/** What the rules read of a parsed configuration. */
interface ListsView {
  readonly server: { readonly protocol: string };
  readonly proxy: { readonly upstream: string };
  readonly http: {
    readonly routes: readonly { readonly path_prefix: string; readonly upstream: string; readonly root: string }[];
  };
  readonly upstreams: readonly {
    readonly name: string;
    readonly servers: readonly { readonly address: string }[];
    readonly health_check_path: string;
  }[];
}

const GROUP_NAME = /^[A-Za-z0-9_.-]+$/;

export function checkLists(config: ListsView, ctx: z.RefinementCtx): void {
  const names = new Map<string, number>();
  config.upstreams.forEach((group, index) => {
    const issue = (path: (string | number)[], message: string, input: unknown) =>
      ctx.addIssue({ code: "custom", path: ["upstreams", index, ...path], message, input });
    if (!GROUP_NAME.test(group.name)) {
      issue(["name"], "must be letters, digits, _ . or - (it names the group in routes and stats)", group.name);
    } else if (names.has(group.name)) {
      issue(["name"], `must differ from upstreams[${names.get(group.name)}].name`, group.name);
    } else {
      names.set(group.name, index);
    }
    if (group.servers.length === 0) issue(["servers"], 'must name at least one server, like ["127.0.0.1:9001"]', []);
    const addresses = new Map<string, number>();
    group.servers.forEach((server, position) => {
      const parsed = parseHostPort(server.address);
      if (typeof parsed === "string") {
        issue(["servers", position], parsed, server.address);
      } else if (addresses.has(server.address)) {
        issue(["servers", position], `repeats servers[${addresses.get(server.address)}]`, server.address);
      } else {
        addresses.set(server.address, position);
      }
    });
    const checkPath = group.health_check_path;
    if (checkPath !== "" && !checkPath.startsWith("/")) {
      issue(["health_check_path"], 'must start with "/" (or be "" for no active checks)', checkPath);
    } else if (!/^[!-~]*$/.test(checkPath)) {
      // It goes into the check's request line as written: a space or a control character would break it.
      issue(["health_check_path"], "must be a path and query of visible ASCII (percent-encode the rest)", checkPath);
    }
  });

  const prefixes = new Map<string, number>();
  config.http.routes.forEach((route, index) => {
    const issue = (key: string, message: string, input: unknown) =>
      ctx.addIssue({ code: "custom", path: ["http", "routes", index, key], message, input });
    const unmatchable = unmatchablePart(route.path_prefix);
    if (!route.path_prefix.startsWith("/")) {
      issue("path_prefix", 'must start with "/"', route.path_prefix);
    } else if (unmatchable !== null) {
      issue("path_prefix", unmatchable, route.path_prefix);
    } else if (prefixes.has(route.path_prefix)) {
      issue("path_prefix", `repeats http.routes[${prefixes.get(route.path_prefix)}].path_prefix`, route.path_prefix);
    } else {
      prefixes.set(route.path_prefix, index);
    }
    if ((route.upstream === "") === (route.root === "")) {
      issue("upstream", "or root must be set, and only one of them (a route proxies or serves files)", route.upstream);
    } else if (route.upstream !== "" && !names.has(route.upstream)) {
      issue("upstream", `must name one of the [[upstreams]] (${describeNames(names)})`, route.upstream);
    }
  });

  if (config.server.protocol === "tcp_proxy") {
    const upstream = config.proxy.upstream;
    if (upstream === "") {
      ctx.addIssue({
        code: "custom",
        path: ["proxy", "upstream"],
        message: `must name the [[upstreams]] group to relay to when server.protocol is "tcp_proxy" (${describeNames(names)})`,
        input: upstream,
      });
    } else if (!names.has(upstream)) {
      ctx.addIssue({
        code: "custom",
        path: ["proxy", "upstream"],
        message: `must name one of the [[upstreams]] (${describeNames(names)})`,
        input: upstream,
      });
    }
  }
}

/**
 * Why `prefix` is not what a route can match, or null. Prefixes are matched against the path as the server
 * understands it (src/http/prefix-routes.ts): without the query, percent-decoded, `//` merged.
 */
function unmatchablePart(prefix: string): string | null {
  // (A "?" in a path arrives encoded, as %3F: a prefix with one is meant for the query, which is not matched.)
  if (prefix.includes("?")) return 'cannot hold "?": it is matched against the path, not the query';
  if (/%[0-9A-Fa-f]{2}/.test(prefix)) {
    return 'cannot hold percent-encoding: it is matched against the decoded path (write "é", not "%C3%A9")';
  }
  if (prefix.includes("//")) return 'cannot hold "//": empty path segments are merged before matching';
  return null;
}

function describeNames(names: ReadonlyMap<string, number>): string {
  return names.size === 0 ? "none is configured" : `configured: ${[...names.keys()].join(", ")}`;
}
