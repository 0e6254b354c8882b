/**
 * Real L7 traffic for the L7 integration test, run as its own process so its
 * sockets are not the test runner's: an HTTP/1.1 server (node:http) with known
 * routes and a known handler delay, a plain-text gRPC server and client
 * (@grpc/grpc-js, a generic service with raw-bytes messages: no protoc), and
 * Node's HTTP client on one keep-alive connection. curl and dig are driven by
 * the test itself. Prints `ready HTTP_PORT GRPC_PORT` once listening, runs the
 * Node and gRPC clients when it reads `go` on stdin, prints `done`, and exits
 * on `exit`. Not a module to import: it starts servers when loaded.
 */
import http from 'node:http';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';

/** Handler delay of /slow (argv[2], ms): a span of it must last at least this long. */
const SLOW_MS = Number(process.argv[2] ?? 120);

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const send = (status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'text/plain', 'set-cookie': 'session=SERVER-SECRET-COOKIE' });
    res.end(body);
  };
  if (url.pathname.startsWith('/users/')) return send(200, `user ${url.pathname.slice(7)}`);
  if (url.pathname === '/slow') {
    // libuv's timers count from the loop's cached time and can fire a little early: check the clock
    const t0 = process.hrtime.bigint();
    const done = () => (process.hrtime.bigint() - t0 >= BigInt(SLOW_MS) * 1_000_000n ? send(200, 'slow') : setTimeout(done, 1));
    return void setTimeout(done, SLOW_MS);
  }
  if (url.pathname === '/boom') return send(500, 'boom');
  send(404, 'not found');
});

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE: grpc.ServiceDefinition = {
  Echo: { path: '/ringflow.test.Greeter/Echo', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  Fail: { path: '/ringflow.test.Greeter/Fail', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};

const grpcServer = new grpc.Server();
grpcServer.addService(SERVICE, {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
  Fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
});

function get(agent: http.Agent, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent, headers: { authorization: 'Bearer NODE-SECRET-TOKEN' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

async function clients(httpPort: number, grpcPort: number): Promise<void> {
  // three requests, one after the other, on one keep-alive connection
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (const p of ['/users/1', '/users/2', '/users/3']) await get(agent, httpPort, p);
  agent.destroy();

  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Greeter');
  const client = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  const unary = (method: 'Echo' | 'Fail') =>
    new Promise<number>((resolve) => {
      const md = new grpc.Metadata();
      md.set('authorization', 'Bearer GRPC-SECRET-TOKEN');
      (client as unknown as Record<string, (req: Buffer, md: grpc.Metadata, cb: (err: grpc.ServiceError | null) => void) => void>)[method]!(Buffer.from('hello'), md, (err) => resolve(err ? err.code : 0));
    });
  await unary('Echo');
  await unary('Fail');
  client.close();
}

server.listen(0, '127.0.0.1', () => {
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, grpcPort) => {
    if (err) throw err;
    const httpPort = (server.address() as { port: number }).port;
    console.log(`ready ${httpPort} ${grpcPort}`);
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line === 'go') void clients(httpPort, grpcPort).then(() => console.log('done'));
      if (line === 'exit') {
        rl.close();
        grpcServer.forceShutdown();
        server.closeAllConnections();
        server.close(() => process.exit(0));
      }
    });
  });
});
