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
# Written whole or not at all: the coordinator may kill this side at any moment (say, when its partner is
# refused), and a pid file cut off between open and write would be read as an empty pid.
pid_file = Path(os.environ["AB_FAKE_PIDS"], side)
pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
os.replace(pid_file.with_suffix(".tmp"), pid_file)
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
