// proxy.send_proxy_protocol checked by another implementation: nginx with `listen ... proxy_protocol` reads hps's
// PROXY v2 header and says whom it names (the client's address and port, and where the client reached hps).
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../helpers/common.ts";
import { makeTempDir, removeDir } from "../helpers/http.ts";
import { closedPort, startTcpProxyFront, upstreamSettings } from "../helpers/upstream.ts";

const dir = makeTempDir("hps-proxy-protocol-nginx-");
afterAll(() => removeDir(dir));

test("nginx reads the PROXY v2 header hps sends: client address and port, and hps's own", async () => {
  const port = closedPort();
  mkdirSync(join(dir, "logs"));
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `  ${kind}_temp_path ${join(dir, kind)};`)
    .join("\n");
  writeFileSync(
    join(dir, "nginx.conf"),
    `${process.getuid?.() === 0 ? "user root;\n" : ""}worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "logs/error.log")} warn;
events { worker_connections 64; }
http {
  access_log off;
${temp}
  server {
    listen 127.0.0.1:${port} proxy_protocol;
    location / {
      return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port";
    }
  }
}
`,
  );
  const nginx = Bun.spawn(["/usr/sbin/nginx", "-p", dir, "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], {
    stdout: "ignore",
    stderr: "inherit",
  });
  try {
    using front = startTcpProxyFront(upstreamSettings([`127.0.0.1:${port}`], { max_fails: 0 }), true);
    let answer = "";
    let clientPort = 0;
    // nginx may still be starting: the first attempts can find nothing listening.
    await waitFor(
      async () => {
        const chunks: Buffer[] = [];
        const closed = Promise.withResolvers<void>();
        const socket = await Bun.connect({
          hostname: "127.0.0.1",
          port: front.port,
          socket: { data: (_socket, chunk) => void chunks.push(Buffer.from(chunk)), close: () => closed.resolve() },
        });
        clientPort = socket.localPort;
        socket.write("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        await closed.promise;
        answer = Buffer.concat(chunks).toString("latin1");
        return answer.startsWith("HTTP/1.1 200");
      },
      10_000,
      "nginx to answer through the proxy",
    );
    expect(answer.slice(answer.indexOf("\r\n\r\n") + 4)).toBe(`127.0.0.1 ${clientPort} 127.0.0.1 ${front.port}`);
  } finally {
    nginx.kill("SIGQUIT");
    await nginx.exited;
  }
}, 20_000);
