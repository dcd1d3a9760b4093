"""gunicorn settings for the portal: ``gunicorn -c python:captive.gunicorn_conf
'captive:create_app()'`` (as the systemd unit runs it).

The same settings serve plain HTTP (the pages) and, given a certificate, HTTPS (the RFC 8908
API). Threads, not more processes: most of a request's time is the wait for the controller's
answer on its socket, and the form-token and rate-limit state is per process. Each setting
can be changed from the environment without editing the unit.
"""

from __future__ import annotations

import os

bind = os.environ.get("WIFIKOTA_PORTAL_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WIFIKOTA_PORTAL_WORKERS", "4"))
worker_class = "gthread"
threads = int(os.environ.get("WIFIKOTA_PORTAL_THREADS", "4"))
max_requests = 10_000  # a worker is replaced now and then (jittered, so not all at once)
max_requests_jitter = 1_000
timeout = 30
graceful_timeout = 10
keepalive = 5
# one line per request on stdout (the journal); set WIFIKOTA_PORTAL_ACCESS_LOG= to turn off
accesslog = os.environ.get("WIFIKOTA_PORTAL_ACCESS_LOG", "-") or None
# HTTPS (the RFC 8908 API): a second instance with a certificate for the portal's name,
# bound to portal.tls_port (systemd/wifikota-portal-tls.service)
certfile = os.environ.get("WIFIKOTA_PORTAL_CERT") or None
keyfile = os.environ.get("WIFIKOTA_PORTAL_KEY") or None
# the client's address is what the portal keys everything on: never take it from headers
forwarded_allow_ips = ""
proxy_allow_ips = ""
