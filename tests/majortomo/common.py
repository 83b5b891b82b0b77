"""What client.py and worker.py share: line-buffered output, a hard deadline, frame printing."""

import logging
import os
import signal
import sys


def setup(name, seconds):
    """Line-buffered stdout (the test reads it through a pipe), majortomo's own log on stderr, and a hard deadline:
    after `seconds` the process prints why and exits 3, whatever it is blocked on."""
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(name)s %(levelname)s %(message)s")

    def expired(*_):
        print("E: {} still running after {} s, giving up".format(name, seconds), flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, int(seconds)))


def show(frames):
    """Frames as a readable list: text frames as text, anything else as hex."""
    out = []
    for frame in frames:
        if all(32 <= b < 127 for b in frame):
            out.append(repr(frame.decode("ascii")))
        else:
            out.append("0x" + frame.hex())
    return "[" + ", ".join(out) + "]"


def partial_body(k, request):
    """The k-th (1-based) PARTIAL the test worker sends for `request`: one frame naming it and the request."""
    return [b"partial %d of " % k + (request[0] if request else b"")]
