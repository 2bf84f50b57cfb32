/**
 * The benchmark's proxy floor: the least a reverse proxy can do, in node:http alone. Every
 * request is streamed to UPSTREAM_URL over keep-alive connections and the answer streamed back,
 * with no routing, headers, limits, logs or error bodies. Run as a process of its own (plain
 * JavaScript, no loader), in front of the content service.
 *
 * The gateway does everything this does and more, so its figures cannot beat these: the
 * `floor-mod` workload shows how much of the gateway's cost any proxy in Node.js pays on the
 * machine of the run, and so whether a latency target is within reach at all.
 */
import http from 'node:http';
import { URL } from 'node:url';

const port = Number(process.env.PORT);
const upstream = new URL(process.env.UPSTREAM_URL ?? '');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });

const server = http.createServer((req, res) => {
  const outgoing = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  outgoing.on('error', () => res.destroy());
  req.pipe(outgoing);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
