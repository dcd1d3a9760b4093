"""A NAS-mode router's RFC 5176 port for tests: it takes Disconnect-Requests on loopback."""

from __future__ import annotations

import socket
import threading
from typing import Any


class RouterListener:
    """Takes ``expect`` Disconnect-Requests (each kept with whether its authenticator is
    right for ``secret``) and answers each with Disconnect-ACK. ``close`` waits for them,
    10 s at most a request."""

    def __init__(self, secret: str, expect: int = 1) -> None:
        from pyrad.dictionary import Dictionary

        from radius.server import DICTIONARY

        self.secret, self.expect = secret.encode(), expect
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.dictionary = Dictionary(str(DICTIONARY))
        self.received: list[tuple[Any, bool]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        from pyrad import packet

        for _ in range(self.expect):
            try:
                data, source = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                return
            request = packet.CoAPacket(packet=data, secret=self.secret, dict=self.dictionary)
            self.received.append((request, request.VerifyCoARequest()))
            reply = request.CreateReply()
            reply.code = packet.DisconnectACK
            self.sock.sendto(reply.ReplyPacket(), source)

    def close(self) -> None:
        self.thread.join(timeout=10 * self.expect + 5)
        self.sock.close()
