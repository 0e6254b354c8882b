/**
 * The soak's HTTP/1.1 server (node:http, keep-alive), spawned as its own
 * process so the collector sees a server that is not the test. It counts the
 * responses it finished: that is the known work for HTTP server spans (wrk
 * stops mid-request at its deadline, so the clients' own count can be a few
 * short of what the server answered).
 *   prints "port N"; answers each stdin "count" with "count K"; exits when stdin closes
 */
import http from 'node:http';
import readline from 'node:readline';

let served = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(req.url === '/rfsoak/missing' ? 404 : 200, { 'content-type': 'text/plain' });
    res.end('ok\n', () => { served++; });
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`port ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (l) => { if (l.trim() === 'count') process.stdout.write(`count ${served}\n`); });
rl.on('close', () => { server.close(); server.closeAllConnections(); });
