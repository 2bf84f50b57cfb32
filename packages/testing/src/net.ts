import net from 'node:net';

// Below Linux's default ephemeral range (32768–60999), from which the kernel hands out the
// ports of port-0 listeners and of outgoing connections on its own.
const FIRST_PORT = 20_000;
const LAST_PORT = 32_000;

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a process that must be told its port
 * before it listens.
 *
 * @remarks Chosen at random below the ephemeral range. A port-0 pick comes from that range, and
 * between this check and the process's own listen, any test's outgoing connection or port-0
 * server could take it (a stack failed with EADDRINUSE that way while the benchmark test ran
 * beside it). Here only another explicit choice could, and a random one rarely does.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const port = FIRST_PORT + Math.floor(Math.random() * (LAST_PORT - FIRST_PORT));
    if (await isFree(port)) return port;
  }
  throw new Error(`no free port between ${FIRST_PORT} and ${LAST_PORT} after 100 tries`);
}

/** Whether a listener can take `port` on 127.0.0.1 now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
