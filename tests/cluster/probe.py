#!/usr/bin/env python3
"""A small TCP probe of one emulated link: `probe.py serve PORT` (run as the receiving node) accepts
one connection and prints, as JSON, the payload bytes it read and the seconds from the first byte to
the end; `probe.py send HOST PORT SECONDS` (run as the sending node) streams zeros for SECONDS.

The receiver's rate is TCP payload per second. tc's tbf counts whole Ethernet frames, so at a shaped
rate R the payload rate is R * MSS / (MSS + 66): a full frame carries MSS = 1448 payload bytes under
66 bytes of headers (Ethernet 14, IPv4 20, TCP 20 + 12 of timestamp option)."""
import json
import socket
import sys
import time


def serve(port):
    with socket.create_server(("0.0.0.0", port)) as srv:
        srv.settimeout(30)
        print("listening", flush=True)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            total = 0
            first = None
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                if first is None:
                    first = time.monotonic()
                total += len(data)
            end = time.monotonic()
            mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    print(json.dumps({"bytes": total, "seconds": end - (first or end), "mss": mss}), flush=True)


def send(host, port, seconds):
    chunk = bytes(1 << 16)
    deadline = time.monotonic() + seconds
    sent = 0
    for _ in range(100):
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise SystemExit("probe: cannot connect to %s:%d" % (host, port))
    with conn:
        while time.monotonic() < deadline:
            conn.sendall(chunk)
            sent += len(chunk)
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
