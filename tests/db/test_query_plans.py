"""What a resident's requests cost does not grow with the number of phones online: every
statement a login, a status question, a logout, an extension, a click into the city app
or an admin's kick runs is served by an index on the tables that grow (sessions, devices,
blocks, vouchers, phone codes, clicks, the audit log), never by a scan of them. Each
statement is captured as it runs and explained by the database itself, on SQLite and
PostgreSQL (with sequential scans priced out, so a usable index is always taken)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from controller.services import vouchers
from controller.store.db import insert_rows
from controller.store.models import Device, EndReason, Session
from tests.db.test_tick import gateway, mac_at

GROWING = {
    "sessions", "devices", "blocks", "vouchers", "phone_codes", "app_clicks", "audit_events",
}  # fmt: skip


@contextmanager
def captured(database) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            seen.append((statement, parameters[0] if executemany else parameters))

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", note)


def scans(database, statement: str, parameters: object) -> list[str]:
    """The growing tables ``statement`` would read whole."""
    with database.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return [d for *_, d in rows if d.startswith("SCAN ") and d.split()[1] in GROWING]
        conn.exec_driver_sql("SET enable_seqscan = off")
        [(plan,)] = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).all()
        found: list[str] = []

        def walk(node: dict) -> None:
            table = node.get("Relation Name")
            if table in GROWING:
                whole = node["Node Type"] == "Seq Scan" or (
                    "Index" in node["Node Type"] and "Index Cond" not in node
                )
                if whole:
                    found.append(f"{node['Node Type']} on {table} {node.get('Index Name')}")
            for child in node.get("Plans", ()):
                walk(child)

        walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
        conn.rollback()
        return found


def fill(database, now, n: int) -> None:
    """``n`` open sessions at TMSBK, each its own device; then the tables analysed."""
    with database.uow(write=True) as uow:
        ids = insert_rows(uow.orm, Device.__table__, [
            {"mac_hash": f"fill-{k}", "first_seen": now, "last_seen": now} for k in range(n)
        ], Device.__table__.c.id)  # fmt: skip
        insert_rows(uow.orm, Session.__table__, [
            {"site_id": "tmsbk", "ap_id": "tmsbk-1", "device_id": i, "ip": f"10.21.{k // 250}.{k % 250}",
             "mac": f"02:ff:00:00:{k // 256:02x}:{k % 256:02x}", "login_method": "click",
             "started_at": now, "expires_at": now + timedelta(hours=1), "last_activity_at": now,
             "bytes_up": 0, "bytes_down": 0}
            for k, (i,) in enumerate(ids)
        ], Session.__table__.c.id)  # fmt: skip
        uow.commit()
    with database.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def test_a_residents_requests_and_an_admins_kick_read_no_growing_table_whole(
    database, ctx, fw, now
):
    fill(database, now, 3000)  # a busy day's open sessions, and the planner knowing it
    controller = gateway(database, ctx, fw, now)
    others = [mac_at(ctx, "jam-gadang-1", h)[0] for h in range(40, 60)]
    for ip in others:  # phones online around them, at the same site
        controller.start_session(ip, now)
    [code] = vouchers.create(database, ctx, count=1, duration_seconds=3600,
                             valid_for_seconds=86400, max_uses=1, site_id="jam-gadang",
                             note=None, actor="test", now=now)  # fmt: skip
    ip = mac_at(ctx, "jam-gadang-1", 21)[0]
    vip = mac_at(ctx, "jam-gadang-1", 22)[0]
    later = now + timedelta(minutes=5)
    steps = {
        "status before login": lambda: controller.status(ip, now),
        "login": lambda: controller.start_session(ip, now),
        "status": lambda: controller.status(ip, now),
        "click into the app": lambda: controller.click(ip, now),
        "extend": lambda: controller.extend(ip, later),
        "voucher login": lambda: controller.start_session(
            vip, now, method="voucher", voucher_code=code.code
        ),
        "logout": lambda: controller.logout(ip, later),
        "kick by address": lambda: controller.end_session(vip, EndReason.KICKED, later, "admin"),
        "kick by MAC": lambda: controller.end_session(
            mac_at(ctx, "jam-gadang-1", 40)[1], EndReason.KICKED, later, "admin"
        ),
        "kick by id": lambda: controller.end_session("3", EndReason.KICKED, later, "admin"),
    }
    found = {}
    for name, step in steps.items():
        with captured(database) as seen:
            step()
        assert seen, name
        for statement, parameters in seen:
            if bad := scans(database, statement, parameters):
                found.setdefault(name, []).append((bad, " ".join(statement.split())[-200:]))
    controller.close()
    assert found == {}, "\n".join(f"{k}: {v}" for k, v in found.items())
