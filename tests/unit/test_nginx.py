"""The front server's config, as `wifikota nginx config` renders it: accepted by Debian's
nginx, with the limits and the headers the portal relies on, and refusing paths and users
that would break it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controller.config import model as config
from controller.errors import BadRequest
from controller.gateway import nginx
from tests.conftest import ROOT

CITY = config.load(ROOT / "sites.yaml")


def rendered(tmp_path: Path, **kw) -> str:
    front = nginx.Front(tmp_path / "portal.sock", tmp_path, **kw)
    return nginx.render(CITY, front)


def test_the_address_and_the_scheme_come_from_nginx_alone(tmp_path):
    text = rendered(tmp_path)
    for line in ("proxy_set_header X-Real-IP $remote_addr;",
                 "proxy_set_header X-Forwarded-Proto $scheme;",
                 'proxy_set_header X-Forwarded-For "";', 'proxy_set_header Forwarded "";',
                 'proxy_set_header X-Forwarded-Ssl "";',
                 'proxy_set_header X-Forwarded-Protocol "";'):  # fmt: skip
        assert line in text
    assert f"server unix:{tmp_path / 'portal.sock'};" in text
    assert "client_header_timeout 10s;" in text and "limit_conn per_address 16;" in text
    assert f"listen {CITY.portal.port};" in text and " ssl;" not in text  # no certificate


def test_https_where_the_certificate_is(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x"), key.write_text("x")
    city = CITY.model_copy(update={"portal": CITY.portal.model_copy(update={"tls_port": 8443})})
    text = nginx.render(city, nginx.Front(tmp_path / "s", tmp_path, cert=cert, key=key))
    assert "listen 8443 ssl;" in text and f"ssl_certificate {cert};" in text


@pytest.mark.parametrize(
    "kw",
    [{"user": "root; daemon on"}, {"user": ""}, {"user": "a b c"}],
)
def test_a_user_that_is_not_one_is_refused(tmp_path, kw):
    with pytest.raises(BadRequest):
        rendered(tmp_path, **kw)


@pytest.mark.parametrize("socket", ["relative.sock", "/tmp/a b.sock", "/tmp/a;b", "/tmp/x\n"])
def test_a_socket_path_nginx_cannot_hold_is_refused(tmp_path, socket):
    with pytest.raises(BadRequest):
        nginx.render(CITY, nginx.Front(Path(socket), tmp_path))


def test_debians_nginx_accepts_the_config(tmp_path):  # scripts/install-system-deps has it
    (tmp_path / "nginx.conf").write_text(rendered(tmp_path, user="root"))
    done = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-q", "-e", "stderr", "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_listen_address_instead_of_the_portals_port(tmp_path):
    text = rendered(tmp_path, listen="127.0.0.1:8081")
    assert "listen 127.0.0.1:8081;" in text and f"listen {CITY.portal.port};" not in text
    for bad in ("localhost:80", "8081; include /etc/passwd", "[::1]:80", ""):
        with pytest.raises(BadRequest):
            rendered(tmp_path, listen=bad)
