"""The control socket under a burst: every worker thread of a busy portal may connect at
once, before the controller gets round to accepting."""

from __future__ import annotations

import contextlib
import socket

from controller.daemon import control


def test_a_burst_of_connections_waits_in_the_backlog_instead_of_failing(tmp_path):
    path = str(tmp_path / "control.sock")
    server = control.listen(None, path)  # bound and listening, not accepting
    clients: list[socket.socket] = []
    try:
        for _ in range(64):  # 4 gunicorn workers x 16 threads asking at the same moment
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(sock)
            sock.settimeout(2)  # as control.call does: a full backlog fails this at once
            sock.connect(path)
    finally:
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.close()
        server.server_close()
    assert len(clients) == 64
