"""
The soak's gRPC peer, on Python grpcio (C-core's HTTP/2 and HPACK, not grpc-js).
Generic handlers on raw bytes: no protoc, no generated code.

  grpc-peer.py server SERVICE                    prints "port N", then one line per stdin "count": the calls it answered
  grpc-peer.py client SERVICE PORT N P [PAUSE]   N unary calls to SERVICE/Ping, a new channel every P calls; prints "ok K"

Bounded: the client makes exactly N calls, each with a deadline; the server
stops when its stdin closes.
"""
import sys
import threading
import time
from concurrent import futures

import grpc

METHOD = 'Ping'
ident = lambda b: b


def server(service):
    lock = threading.Lock()
    n = [0]

    def ping(request, context):
        with lock:
            n[0] += 1
        return b'pong:' + request

    handler = grpc.method_handlers_generic_handler(service, {
        METHOD: grpc.unary_unary_rpc_method_handler(ping, request_deserializer=ident, response_serializer=ident),
    })
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port('127.0.0.1:0')
    srv.start()
    print('port', port, flush=True)
    for line in sys.stdin:
        if line.strip() == 'count':
            with lock:
                print('count', n[0], flush=True)
    srv.stop(1).wait()


def client(service, port, total, per_channel, pause):
    ok = 0
    done = 0
    while done < total:
        with grpc.insecure_channel(f'127.0.0.1:{port}') as ch:
            call = ch.unary_unary(f"/{service}/{METHOD}", request_serializer=ident, response_deserializer=ident)
            for _ in range(min(per_channel, total - done)):
                done += 1
                try:
                    if call(b'x' * 16, timeout=10).startswith(b'pong:'):
                        ok += 1
                except grpc.RpcError as e:
                    print('error', e.code(), file=sys.stderr, flush=True)
                if pause:
                    time.sleep(pause)
    print('ok', ok, flush=True)


if __name__ == '__main__':
    if sys.argv[1] == 'server':
        server(sys.argv[2])
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
