// Baseline: the smallest correct Bun.listen echo (resends the unwritten remainder on drain). Usage: bun bench/baselines/bun-echo.ts --port 9000
import type { Socket } from "bun";

const portIndex = process.argv.indexOf("--port");
const port = portIndex > 0 ? Number(process.argv[portIndex + 1]) : 0;

interface Pending {
  queue: Uint8Array[];
}

const listener = Bun.listen<Pending>({
  hostname: "127.0.0.1",
  port,
  socket: {
    binaryType: "uint8array",
    open(socket) {
      socket.data = { queue: [] };
    },
    data(socket: Socket<Pending>, chunk) {
      const queue = socket.data.queue;
      if (queue.length > 0) {
        queue.push(chunk);
        return;
      }
      const taken = socket.write(chunk);
      if (taken >= 0 && taken < chunk.length) queue.push(chunk.subarray(taken));
    },
    drain(socket) {
      const queue = socket.data.queue;
      while (queue.length > 0) {
        const head = queue[0]!;
        const taken = socket.write(head);
        if (taken < head.length) {
          if (taken > 0) queue[0] = head.subarray(taken);
          return;
        }
        queue.shift();
      }
    },
  },
});
console.log(`bun-echo listening on port ${listener.port}`);
