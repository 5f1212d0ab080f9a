"""A stand-in for one side of 'cifar-bench ab' that misbehaves on purpose (started by tests/test_ab.py).

Usage: python ab_fake_side.py MODE [WORKLOAD-JSON] ab-side --fd N --side S -- run ...
MODE: good (takes every turn it is given, forever), old (a cifar-bench without 'ab-side'),
version (speaks another protocol), hang (goes silent after the handshake), die (exits when given the baton).
Writes its pid to $AB_FAKE_PIDS/<side> so that a test can check it was reaped.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

mode, rest = sys.argv[1], sys.argv[2:]
workload = json.loads(rest.pop(0)) if rest and rest[0].startswith("{") else {"epochs": 1}
fd, side = int(rest[rest.index("--fd") + 1]), rest[rest.index("--side") + 1]
Path(os.environ["AB_FAKE_PIDS"], side).write_text(str(os.getpid()))
if mode == "old":
    print("cifar-bench: error: argument COMMAND: invalid choice: 'ab-side'", file=sys.stderr)
    sys.exit(2)
sock = socket.socket(fileno=fd)
reader = sock.makefile("r")


def send(kind, **fields):
    sock.sendall(json.dumps({"type": kind, **fields}).encode() + b"\n")


def receive():
    line = reader.readline()
    if not line:
        sys.exit(0)  # the coordinator is gone
    return json.loads(line)


send("hello", protocol=99 if mode == "version" else 1, version="fake", runs=1, threads=2, loader="tensor")
if receive()["type"] != "welcome":
    sys.exit(1)
if mode == "hang":
    time.sleep(600)
send("start", workload=workload)
while True:
    message = receive()
    if message["type"] == "go":
        if mode == "die":
            os._exit(3)
        send("turn")
    elif message["type"] == "abort":
        sys.exit(1)
