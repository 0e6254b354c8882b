/**
 * Concurrent L7 traffic for test/integration/l7-linking.test.ts, run as its
 * own process (it starts servers when loaded: never import it). A node:http
 * server whose /h3/slow/N handler waits SLOW_MS (argv[2]) and /h3/fast/N
 * answers at once, and a plain-text gRPC server (@grpc/grpc-js, raw bytes).
 * Prints `ready HTTP_PORT GRPC_PORT`; on `go` it runs, all at once:
 * HTTP_N requests on 4 keep-alive connections, HTTP_N on a new connection
 * each (half of each /slow), and GRPC_N concurrent unary calls on one
 * channel (HTTP/2 streams interleaved); prints `done H G` with the counts
 * that got their answer. Exits on `exit`.
 */
import http from 'node:http';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';

const SLOW_MS = Number(process.argv[2] ?? 50);
const HTTP_N = 12;
const GRPC_N = 8;

/** Waits at least ms by the monotonic clock (libuv timers can fire a little early). */
function delay(ms: number, then: () => void): void {
  const t0 = process.hrtime.bigint();
  const done = () => (process.hrtime.bigint() - t0 >= BigInt(ms) * 1_000_000n ? then() : setTimeout(done, 1));
  setTimeout(done, ms);
}

const server = http.createServer((req, res) => {
  const send = () => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  };
  if ((req.url ?? '').startsWith('/h3/slow/')) return delay(SLOW_MS, send);
  send();
});

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE: grpc.ServiceDefinition = {
  Slow: { path: '/ringflow.h3.Greeter/Slow', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};
const grpcServer = new grpc.Server();
grpcServer.addService(SERVICE, {
  Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => delay(SLOW_MS, () => cb(null, call.request)),
});

function get(agent: http.Agent | false, port: number, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    }).on('error', () => resolve(false));
  });
}

async function clients(httpPort: number, grpcPort: number): Promise<[number, number]> {
  const keep = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const path = (kind: string, i: number) => `/h3/${i % 2 === 0 ? 'slow' : 'fast'}/${kind}${i}`;
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Greeter');
  const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  // connect first: the calls below then go out together on one connection
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5000, (e) => (e ? reject(e) : resolve())));
  const unary = () => new Promise<boolean>((resolve) => {
    (client as unknown as Record<string, (req: Buffer, cb: (err: grpc.ServiceError | null) => void) => void>).Slow!(Buffer.from('hello'), (err) => resolve(!err));
  });
  const results = await Promise.all([
    ...Array.from({ length: HTTP_N }, (_, i) => get(keep, httpPort, path('k', i))),
    ...Array.from({ length: HTTP_N }, (_, i) => get(false, httpPort, path('n', i))),
    ...Array.from({ length: GRPC_N }, () => unary()),
  ]);
  keep.destroy();
  client.close();
  const ok = (xs: boolean[]) => xs.filter(Boolean).length;
  return [ok(results.slice(0, 2 * HTTP_N)), ok(results.slice(2 * HTTP_N))];
}

server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, grpcPort) => {
    if (err) throw err;
    const httpPort = (server.address() as { port: number }).port;
    console.log(`ready ${httpPort} ${grpcPort}`);
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line === 'go') void clients(httpPort, grpcPort).then(([h, g]) => console.log(`done ${h} ${g}`), (e) => console.log(`failed ${String(e)}`));
      if (line === 'exit') {
        rl.close();
        grpcServer.forceShutdown();
        server.closeAllConnections();
        server.close(() => process.exit(0));
      }
    });
  });
});
