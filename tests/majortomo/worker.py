"""A majortomo MDP/0.2 worker for the interoperability tests (tests/study_broker_majortomo.rs).

Serves one service with majortomo's own `Worker` (so the frames are majortomo 0.2.0's: every message starts with an
empty frame, `[""]["MDPW02"][command]…` with READY 1, REQUEST 2, PARTIAL 3, FINAL 4, HEARTBEAT 5, DISCONNECT 6, as
RFC 18 numbers them; it heartbeats the broker every 2.5 s while idle and reconnects on a new socket when it hears
nothing for 10 s). For each request it sends `--partials` PARTIAL replies, the k-th being
`["partial k of <first request frame>"]`, then a FINAL that echoes the request's frames.

Prints `I: majortomo worker ready for <service>` once it has sent READY, one line per request, and `E:`/`W:` lines
for anything unexpected (a protocol error, a DISCONNECT from the broker); majortomo's own log (including its
"Got no heartbeat … reconnecting" line) goes to stderr. Exits 0 after `--requests` requests (0: serve until
SIGTERM/SIGINT, then send DISCONNECT and exit 0), 3 past `--deadline` seconds.
"""

import argparse
import signal
import sys

from majortomo import Worker
from majortomo import error

from common import partial_body, setup, show


class Stop(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--service", default="echo")
    parser.add_argument("--requests", type=int, default=0, help="exit after this many requests; 0: until SIGTERM")
    parser.add_argument("--partials", type=int, default=1, help="PARTIAL replies before each FINAL")
    parser.add_argument("--deadline", type=float, default=300.0, help="hard limit on the whole run, seconds")
    args = parser.parse_args()
    setup("majortomo worker", args.deadline)

    def stop(signum, _frame):
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    worker = Worker(args.endpoint, args.service, zmq_linger=0)
    served = 0
    try:
        worker.connect()
        print("I: majortomo worker ready for {}".format(args.service))
        while args.requests == 0 or served < args.requests:
            try:
                client, request = worker.wait_for_request()
            except error.Disconnected:
                print("W: the broker sent DISCONNECT; connecting again")
                worker.connect()
                print("I: majortomo worker ready for {}".format(args.service))
                continue
            except error.ProtocolError as e:
                print("E: protocol error from the broker: {}".format(e))
                continue
            served += 1
            print("I: request {} from client 0x{}: {}".format(served, client.hex(), show(request)))
            for k in range(1, args.partials + 1):
                worker.send_reply_partial(client, partial_body(k, request))
            worker.send_reply_final(client, request)
        print("I: served {} requests, done".format(served))
    except Stop as s:
        print("I: signal {} after {} requests, disconnecting".format(s.args[0], served))
    finally:
        worker.close()  # sends DISCONNECT
    return 0


if __name__ == "__main__":
    sys.exit(main())
