"""Tiny programs for network tests, run with ``python -I -c`` inside a namespace.

- :data:`SERVER` ``NAME PORT``: serves TCP and UDP on PORT, answering every
  connection/datagram with ``"<NAME> <peer ip>"`` (so a test sees who it talked to and
  which source address arrived); prints ``ready`` once both sockets listen.
- :data:`CLIENT` ``HOST PORT [tcp|udp]``: asks once and prints the answer, or
  ``ERR <exception> <message>`` (a refusal or a timeout after 1.5 s is an answer too).
"""

SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(f"{name} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{name} {peer[0]}".encode()); c.close()
"""

CLIENT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
proto = sys.argv[3] if len(sys.argv) > 3 else "tcp"
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=1.5); print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
        s.sendto(b"?", (host, port)); print(s.recv(100).decode())
except OSError as e:
    print("ERR", type(e).__name__, e)
"""
