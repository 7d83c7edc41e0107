"""A bare ZeroMQ relay: every message of one publisher forwarded, as it comes, by another.

    python bench/zmq_relay.py --source tcp://127.0.0.1:5555 --out tcp://127.0.0.1:5560

The floor for any software between a rig and a display (bench_loop_split.py runs it beside the
daemon on the same messages): one receive and one send per message in its own process, nothing
decoded.
"""

import argparse
import signal

import zmq


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="the publisher to subscribe to (connected)")
    p.add_argument("--out", required=True, help="where to publish the same messages (bound)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    ctx = zmq.Context.instance()
    source, out = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    for sock in (source, out):
        sock.setsockopt(zmq.LINGER, 0)
    source.setsockopt(zmq.RCVHWM, 0)
    source.setsockopt(zmq.SUBSCRIBE, b"")
    source.connect(args.source)
    out.bind(args.out)
    try:
        while True:
            out.send_multipart(source.recv_multipart(copy=False), copy=False)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        out.close()


if __name__ == "__main__":
    main()
