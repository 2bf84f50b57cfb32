/**
 * The benchmark's baseline: a bare node:http server answering every request with a small JSON
 * body, run as a process of its own like the services. Whatever the machine, a service's
 * requests per second divided by this one's says how much of the machine's plain HTTP speed the
 * service keeps, a figure that stays comparable between runs on a noisy machine. Plain
 * JavaScript, run by node itself with no loader, like the built services.
 */
import { Buffer } from 'node:buffer';
import http from 'node:http';

const port = Number(process.env.PORT);
const body = JSON.stringify({ message: 'Hello, world.' });

const server = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(port, '127.0.0.1');

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
