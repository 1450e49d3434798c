// Path-prefix routes: longest prefix wins, matching on the decoded path, strip_prefix.
import { describe, expect, test } from "bun:test";
import { PrefixRoutes, type RouteSettings } from "../../src/http/prefix-routes.ts";

function routes(...prefixes: [string, boolean][]) {
  return new PrefixRoutes<string>(
    prefixes.map(([path_prefix, strip_prefix]) => {
      const settings: RouteSettings = { path_prefix, upstream: `up${path_prefix}`, root: "", strip_prefix };
      return { settings, route: path_prefix };
    }),
  );
}

describe("prefix routes", () => {
  test("the longest matching prefix wins, whatever the order given; no match gives null", () => {
    const table = routes(["/", false], ["/api/v2/", false], ["/api/", false]);
    expect(table.match("/api/v2/users", "")?.route).toBe("/api/v2/");
    expect(table.match("/api/v1/users", "")?.route).toBe("/api/");
    expect(table.match("/index.html", "")?.route).toBe("/");
    expect(routes(["/api/", false]).match("/other", "")).toBeNull();
    expect(routes().match("/api/", "")).toBeNull();
  });

  test("the target keeps the query; strip_prefix cuts the prefix and keeps a leading slash", () => {
    const table = routes(["/api/", true], ["/keep/", false], ["/bare", true]);
    expect(table.match("/api/users/7", "?a=1&b=%2F")?.target).toBe("/users/7?a=1&b=%2F");
    expect(table.match("/api/", "")?.target).toBe("/");
    expect(table.match("/keep/x", "?q")?.target).toBe("/keep/x?q");
    expect(table.match("/bare", "")?.target).toBe("/");
    expect(table.match("/bare/x", "")?.target).toBe("/x");
  });

  test("matching uses the decoded, slash-merged path: encodings cannot slip past a route", () => {
    const table = routes(["/", false], ["/admin/", false], ["/api/", true]);
    expect(table.match("/%61dmin/panel", "")?.route).toBe("/admin/");
    expect(table.match("//admin//panel", "")?.route).toBe("/admin/");
    // The raw target goes upstream unchanged when not stripped...
    expect(table.match("/%61dmin/panel", "")?.target).toBe("/%61dmin/panel");
    // ...and when stripped, the rest is taken from the decoded path and encoded again.
    expect(table.match("/%61pi/a%20b/c", "?x")?.target).toBe("/a%20b/c?x");
    expect(table.match("/api/a%2Fb", "")?.target).toBe("/a%2Fb");
    // An invalid encoding matches nothing (the site answers 400).
    expect(table.match("/api/%zz", "")).toBeNull();
  });
});
