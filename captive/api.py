"""The Captive Portal API (RFC 8908) at the URL that DHCP option 114 (RFC 8910) announces.

Per device: whether it is captive, where to log in, the venue page (the way into the city
app once the OS sheet has closed), the seconds and bytes it has left, whether it can extend.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app

from .pages import client_status, unavailable_or_unknown

bp = Blueprint("api", __name__)

MEDIA_TYPE = "application/captive+json"


@bp.get("/api/captive")
def captive_api() -> Response:
    base = current_app.config["PORTAL_BASE_URL"]
    body: dict[str, Any] = {"user-portal-url": f"{base}/", "venue-info-url": f"{base}/tempat"}
    st = client_status()
    if st is None:
        problem = unavailable_or_unknown()
        body["captive"] = True
        status = 503 if problem == "unavailable" else 200
    else:
        status = 200
        body["captive"] = not st.authorized
        if st.authorized:
            body["seconds-remaining"] = st.seconds_remaining
            if st.bytes_remaining is not None:
                body["bytes-remaining"] = st.bytes_remaining
            body["can-extend-session"] = st.can_extend
    response = Response(json.dumps(body), status=status, content_type=MEDIA_TYPE)
    response.headers["Cache-Control"] = "private, no-store"
    return response
