#!/usr/bin/env python3
"""The lab's long-lived flows (tests/it/flows.rs), in both families.

  peer.py serve LOG ADDR...   on pod B: a UDP socket on port 5140 and a TCP
                              listener on 7000 per ADDR; logs "udp PEER" per
                              datagram and "tcp PEER" per connection accepted.
  peer.py send LOG SRC DST [PORT]
                              on pod A: a UDP datagram from SRC:5140 to DST:5140
                              every 0.1 s (a fixed source port, as syslog and
                              statsd send), and one TCP connection to DST:7000
                              writing a line every 0.1 s; logs "reset" and
                              reconnects when the connection is reset. With
                              PORT (a service's), the TCP connection alone, to
                              DST:PORT.
"""
import select
import socket
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve(log, addrs):
    udps, listeners, conns = [], [], []
    for a in addrs:
        u = socket.socket(family(a), socket.SOCK_DGRAM)
        t = socket.socket(family(a), socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A new lab's address may not be usable yet: try for 5 s.
        for _ in range(50):
            try:
                u.bind((a, 5140))
                t.bind((a, 7000))
                break
            except OSError:
                time.sleep(0.1)
        t.listen(16)
        udps.append(u)
        listeners.append(t)
    while True:
        ready, _, _ = select.select(udps + listeners + conns, [], [], 1.0)
        for s in ready:
            if s in udps:
                _, peer = s.recvfrom(2048)
                log.write(f"udp {peer[0]}\n")
            elif s in listeners:
                c, peer = s.accept()
                conns.append(c)
                log.write(f"tcp {peer[0]}\n")
            else:
                try:
                    data = s.recv(2048)
                except OSError:
                    data = b""
                if not data:
                    conns.remove(s)
                    s.close()


def send(log, src, dst, port):
    u = None
    if port is None:
        u = socket.socket(family(src), socket.SOCK_DGRAM)
        # A new lab's address may not be usable yet: try for 5 s.
        for _ in range(50):
            try:
                u.bind((src, 5140))
                break
            except OSError:
                time.sleep(0.1)
    conn = None
    while True:
        if u is not None:
            u.sendto(b"tick\n", (dst, 5140))
        try:
            if conn is None:
                conn = socket.create_connection((dst, port or 7000), timeout=2, source_address=(src, 0))
            conn.sendall(b"tick\n")
        except OSError:
            if conn is not None:
                log.write("reset\n")
                conn.close()
            conn = None
        time.sleep(0.1)


if __name__ == "__main__":
    out = open(sys.argv[2], "a", buffering=1)
    if sys.argv[1] == "serve":
        serve(out, sys.argv[3:])
    else:
        send(out, sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else None)
