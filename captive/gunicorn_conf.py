"""gunicorn settings for the portal: ``gunicorn -c python:captive.gunicorn_conf
'controller.bootstrap:portal()'`` (as the systemd unit runs it).

gunicorn sits behind nginx (``wifikota nginx config``; controller/gateway/nginx.py), as gunicorn's
own deployment guide advises, and listens only on a Unix socket that nginx, and nobody on
the network, can open. nginx holds the slow and the many connections; gunicorn's threads
serve whole requests. Threads, not more processes: most of a request's time is the wait
for the controller's answer on its socket. Rate limits and sign-ins are in the database,
form tokens are signed with the city's secret: every worker and every portal node sees the
same. Each setting can be changed from the environment without editing the unit.
"""

from __future__ import annotations

import os

# a Unix socket (nginx's upstream); a TCP address works too, and then the client's address
# is the socket's peer and no header is trusted (captive.pages.client_ip)
bind = os.environ.get("WIFIKOTA_PORTAL_BIND", "unix:/run/wifikota-portal/portal.sock")
umask = 0o007  # the socket: its owner and its group (nginx's workers are in it)
workers = int(os.environ.get("WIFIKOTA_PORTAL_WORKERS", "4"))
worker_class = "gthread"


def worker_threads() -> int:
    """Threads per worker (``WIFIKOTA_PORTAL_THREADS``, default 4); the portal lets half of
    them, at most, wait on the database for the dashboard (captive.parts)."""
    return int(os.environ.get("WIFIKOTA_PORTAL_THREADS", "4"))


threads = worker_threads()
max_requests = 10_000  # a worker is replaced now and then (jittered, so not all at once)
max_requests_jitter = 1_000
timeout = 30
graceful_timeout = 10
keepalive = 5
# one line per request on stdout (the journal), with the client's address as nginx saw it;
# set WIFIKOTA_PORTAL_ACCESS_LOG= to turn off
accesslog = os.environ.get("WIFIKOTA_PORTAL_ACCESS_LOG", "-") or None
access_log_format = '%({x-real-ip}i)s %(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# X-Forwarded-Proto (https: HSTS, Secure cookies) counts only from nginx on the Unix socket;
# from a TCP peer, never
forwarded_allow_ips = ""
proxy_allow_ips = ""
