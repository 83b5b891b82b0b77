"""A majortomo MDP/0.2 client for the interoperability tests (tests/study_broker_majortomo.rs).

Sends REQUESTs with majortomo's own `Client` one at a time, reads every reply part with `recv_part` until the FINAL,
prints each part's frames, and checks them exactly. The frames are majortomo 0.2.0's (DEALER socket; its
`protocol.py` numbers client and worker commands from one table: READY 1, REQUEST 2, PARTIAL 3, FINAL 4):
REQUEST `[""]["MDPC02"][0x02][service][body…]`; it accepts only `[""]["MDPC02"][0x03 PARTIAL | 0x04 FINAL][body…]`,
with no service frame, and raises a protocol error on anything else.

The checks:

* request i's body is the frame `<body>-<i>` followed by the extra `--frame` frames;
* the reply must be `--partials` PARTIAL parts, the k-th being `["partial k of <body>-<i>"]`, then one FINAL part
  equal to the request's body frames (an echo). A broker that put the service frame into PARTIAL/FINAL (RFC 18
  framing), sent no leading empty frame, or dropped/duplicated a part fails the check.

After the last reply it waits `--quiet-ms` and fails if anything more arrives (a stray duplicate FINAL).
Exit 0 iff every reply was as expected; 1 on a wrong reply; 2 on a timeout or a protocol error; 3 past `--deadline`.
"""

import argparse
import sys

import zmq
from majortomo import Client
from majortomo import error

from common import partial_body, setup, show


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--service", default="echo")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--body", default="hello")
    parser.add_argument("--frame", action="append", default=[], help="an extra body frame (repeatable)")
    parser.add_argument("--partials", type=int, default=0, help="PARTIAL parts expected before each FINAL")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply part")
    parser.add_argument("--quiet-ms", type=int, default=300)
    parser.add_argument("--deadline", type=float, default=120.0, help="hard limit on the whole run, seconds")
    args = parser.parse_args()
    setup("majortomo client", args.deadline)

    service = args.service.encode("ascii")
    failures = 0
    with Client(args.endpoint, zmq_linger=0) as client:
        print("I: majortomo client connected to {}, service {}".format(args.endpoint, args.service))
        for i in range(args.requests):
            request = [("%s-%d" % (args.body, i)).encode()] + [f.encode() for f in args.frame]
            client.send(service, *request)
            print("I: request {}: {}".format(i, show(request)))
            parts = []
            try:
                while True:
                    part = client.recv_part(timeout=args.timeout)
                    if part is None:  # the FINAL came with the previous part
                        break
                    parts.append(part)
                    print("I: reply {} part {}: {}".format(i, len(parts), show(part)))
            except error.Timeout:
                print("E: request {}: no reply part within {} s after {} part(s)".format(i, args.timeout, len(parts)))
                return 2
            except error.ProtocolError as e:
                print("E: request {}: protocol error from the broker: {}".format(i, e))
                return 2
            expected = [partial_body(k, request) for k in range(1, args.partials + 1)] + [request]
            if parts == expected:
                print("I: reply {} as expected".format(i))
            else:
                failures += 1
                print("E: reply {} is {}, expected {}".format(
                    i, " + ".join(show(p) for p in parts), " + ".join(show(p) for p in expected)))
        # Nothing more may come: a second FINAL, a stray PARTIAL.
        if client._socket.poll(args.quiet_ms, zmq.POLLIN):
            stray = client._socket.recv_multipart()
            print("E: unexpected message after the last reply: {}".format(show(stray)))
            failures += 1
    if failures:
        print("E: {} of {} replies wrong".format(failures, args.requests))
        return 1
    print("OK: {} replies as expected".format(args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
