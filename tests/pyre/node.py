"""A pyre (zeromq-pyre, Python's ZRE v2) node for tests/study_p2p_pyre.rs.

Written for zguide-rs's tests: it joins a group, prints every event as one
line on stdout, and obeys commands read from stdin, one per line:

    shout TEXT          SHOUT TEXT to the group
    whisper NAME TEXT   WHISPER TEXT to the peer called NAME
    quit                stop the node (pyre sends its goodbye) and exit

It prints `ready <uuid>` once started, then `ENTER <name> <header X-ROLE>`,
`JOIN <name> <group>`, `LEAVE <name> <group>`, `SHOUT <name> <group> <text>`,
`WHISPER <name> <text>`, `EXIT <name>`. End of input is `quit`.

usage: node.py NAME GROUP
"""

import sys

import zmq
from pyre import Pyre


def main():
    name, group = sys.argv[1], sys.argv[2]
    node = Pyre(name)
    node.set_header("X-ROLE", "pyre-test")
    node.join(group)
    node.start()
    print("ready", node.uuid().hex, flush=True)
    names = {}
    poller = zmq.Poller()
    poller.register(node.socket(), zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    running = True
    while running:
        for item, _ in poller.poll(10000):
            if item == node.socket():
                show(node, node.recv(), names)
            else:
                line = sys.stdin.readline()
                running = command(node, group, line, names)
    node.stop()
    print("stopped", flush=True)


def show(node, frames, names):
    kind = frames[0].decode()
    peer = frames[1]
    name = frames[2].decode()
    names[name] = peer
    if kind == "ENTER":
        role = node.peer_header_value(__import__("uuid").UUID(bytes=peer), "X-ROLE")
        print("ENTER", name, role, flush=True)
    elif kind in ("JOIN", "LEAVE"):
        print(kind, name, frames[3].decode(), flush=True)
    elif kind == "SHOUT":
        print("SHOUT", name, frames[3].decode(), frames[4].decode(), flush=True)
    elif kind == "WHISPER":
        print("WHISPER", name, frames[3].decode(), flush=True)
    elif kind == "EXIT":
        print("EXIT", name, flush=True)


def command(node, group, line, names):
    import uuid

    if not line or line.strip() == "quit":
        return False
    verb, _, rest = line.rstrip("\n").partition(" ")
    if verb == "shout":
        node.shouts(group, rest)
    elif verb == "whisper":
        target, _, text = rest.partition(" ")
        if target in names:
            node.whispers(uuid.UUID(bytes=names[target]), text)
        else:
            print("nobody called", target, flush=True)
    return True


if __name__ == "__main__":
    main()
