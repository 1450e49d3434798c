// Baseline: raw Bun.serve whose fetch handler returns new Response(Bun.file(path)) per request (no cache, no checks).
// Usage: bun bench/baselines/bun-http-file.ts --port 9000 --root ./public   (prints the port)
const argument = (name: string, fallback: string) => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1]! : fallback;
};
const port = Number(argument("--port", "0"));
const root = argument("--root", "./public");

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  development: false,
  fetch(request) {
    const url = request.url;
    const pathStart = url.indexOf("/", 8);
    const queryStart = url.indexOf("?", pathStart);
    const path = queryStart < 0 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
    return new Response(Bun.file(root + path)); // Bun answers 404 itself when the file is missing
  },
  error: () => new Response("Not Found", { status: 404 }),
});
console.log(server.port);
