"""The lab's internet: answers the OS connectivity probes like the real servers, serves
the city app (over HTTP and, with a certificate, HTTPS), files of any size, and slow
streams. Run inside a lab namespace."""

from __future__ import annotations

import argparse
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PROBES = {
    "/hotspot-detect.html": "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    "/library/test/success.html": "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    "/connecttest.txt": "Microsoft Connect Test",
    "/ncsi.txt": "Microsoft NCSI",
    "/canonical.html": '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>',
    "/success.txt": "success\n",
}
CHUNK = 16 * 1024


class DualStackServer(ThreadingHTTPServer):
    """Listens on IPv6 and IPv4 alike (IPv4 clients appear as ::ffff:a.b.c.d)."""

    address_family = socket.AF_INET6
    # socketserver's default backlog is 5: 200 phones probing at once after their logins
    # would have their SYNs dropped here and retried a second later, which is the stand-in
    # internet's doing, not the gateway's
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class TlsServer(DualStackServer):
    """HTTPS; each connection's handshake happens in its own thread, at its first read."""

    def __init__(self, address: tuple[str, int], handler: type, tls: ssl.SSLContext) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class Handler(BaseHTTPRequestHandler):
    server_version = "lab-internet"
    name = "INTERNET"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if self.name != "INTERNET":
            self._send(200, f"{self.name} {self.headers.get('Host', '')}{self.path}".encode())
        elif url.path in ("/generate_204", "/gen_204"):
            self._send(204, b"")
        elif url.path in PROBES:
            self._send(200, PROBES[url.path].encode(), "text/html")
        elif url.path.startswith("/bytes/"):
            size = int(url.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * CHUNK
            while size > 0:
                self.wfile.write(block[: min(size, CHUNK)])
                size -= CHUNK
        elif url.path == "/slow":
            seconds = float(query.get("seconds", ["30"])[0])
            self.send_response(200)
            self.end_headers()
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    self.wfile.write(b"y" * CHUNK)
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        else:
            self._send(
                200, f"CITY-APP {self.headers.get('Host', '')}{self.path}".encode(), "text/html"
            )


def _do_post(self: Handler) -> None:
    """Swallow an upload and say how many bytes came."""
    size = int(self.headers.get("Content-Length", "0"))
    got = 0
    while got < size:
        chunk = self.rfile.read(min(CHUNK, size - got))
        if not chunk:
            break
        got += len(chunk)
    self._send(200, str(got).encode())


Handler.do_POST = _do_post  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", default="80")
    parser.add_argument("--name", default="INTERNET")
    parser.add_argument("--tls-ports", default="", help="ports that speak HTTPS")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    Handler.name = args.name
    servers = [DualStackServer(("::", int(p)), Handler) for p in args.ports.split(",")]
    if args.tls_ports:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
        servers += [TlsServer(("::", int(p)), Handler, tls) for p in args.tls_ports.split(",")]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
