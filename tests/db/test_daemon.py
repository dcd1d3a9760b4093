"""The controller daemon with a database behind it: how the sessions it and the admins end
reach a NAS-mode site's router, through the Disconnect port it is given."""

from __future__ import annotations

from datetime import timedelta

from controller.services import nas
from controller.services.nas import AcctRecord
from tests.db.test_nas import IP, MAC, SITE, admit, code_for


def test_the_controller_tells_the_router_when_a_sessions_time_is_over_not_when_idle(
    database, nas_ctx, fw, now, monkeypatch
):
    """The daemon's sweep ends NAS-mode sessions too; one whose time ran out is also cut
    off at its router (a Disconnect-Request); an idle one is only ended here."""
    from controller.daemon.controller import Controller
    from controller.gateway.neighbours import MemoryNeighbours
    from radius.coa import RouterDisconnect
    from tests.nasrouter import RouterListener

    monkeypatch.setenv("WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR", "router-secret")
    router = RouterListener("router-secret", expect=1)
    (client,) = nas_ctx.config.radius.clients
    client = client.model_copy(update={"address": "127.0.0.1", "coa_port": router.port})
    radius = nas_ctx.config.radius.model_copy(update={"clients": (client,)})
    ctx = type(nas_ctx)(nas_ctx.config.model_copy(update={"radius": radius}), nas_ctx.device_hash)
    busy = admit(database, ctx, now, code := code_for(database, ctx, now, seconds=3600), code)
    quiet_code = code_for(database, ctx, now)
    quiet = admit(
        database, ctx, now, quiet_code, quiet_code, mac="3C-5A-B4-00-00-01", ip="10.5.50.21"
    )
    for a, sid in ((busy, "81a00042"), (quiet, "81a00043")):
        record = AcctRecord(nas.START, sid, class_=a.class_)
        nas.account(database, ctx, nas=client.name, site_id=SITE, record=record, now=now)
    interim = AcctRecord(nas.INTERIM, "81a00042", input_octets=10, output_octets=20)
    nas.account(database, ctx, nas=client.name, site_id=SITE, record=interim,
                now=now + timedelta(minutes=50))  # fmt: skip
    controller = Controller(database, ctx, fw, MemoryNeighbours(), disconnect=RouterDisconnect())
    try:
        idle = controller.tick(now + timedelta(minutes=20)).ended
        assert [(s.id, s.end_reason) for s in idle] == [(quiet.session_id, "idle")]
        over = controller.tick(now + timedelta(minutes=61)).ended
        assert [(s.id, s.end_reason) for s in over] == [(busy.session_id, "timeout")]
    finally:
        router.close()  # waits for the one Disconnect-Request it expects
        controller.close()
    assert len(router.received) == 1
    for request, authentic in router.received:
        assert authentic
        assert request["Acct-Session-Id"] == ["81a00042"]
        assert request["Calling-Station-Id"] == [MAC]


def test_a_controller_stopping_drops_the_routers_not_yet_told(
    database, nas_ctx, fw, now, monkeypatch
):
    """Routers that do not answer hold each Disconnect-Request for seconds; a daemon that
    stops waits for those under way, not for the queue behind them."""
    import threading
    import time as clock

    from controller.daemon.controller import Controller
    from controller.gateway.neighbours import MemoryNeighbours
    from controller.services.sessions import SessionInfo
    from radius import coa

    monkeypatch.setenv("WIFIKOTA_RADIUS_SECRET_SIMPANG_AUR", "router-secret")
    started, release = threading.Semaphore(0), threading.Event()

    def silent_router(nas, target, **kw):
        started.release()
        release.wait(10)
        return "no answer"

    monkeypatch.setattr(coa, "disconnect", silent_router)
    ended = [
        SessionInfo(i, SITE, None, IP, MAC, "voucher", now, now, now, "timeout", 0, 0)
        for i in range(10)
    ]
    controller = Controller(
        database, nas_ctx, fw, MemoryNeighbours(), disconnect=coa.RouterDisconnect()
    )
    told = controller.tell_routers(nas_ctx.config, ended)
    assert len(told) == 10
    under_way = sum(started.acquire(timeout=10) for _ in range(4))
    assert under_way == 4, "four routers are told at a time"
    stopping = threading.Thread(target=controller.close)
    stopping.start()
    for _ in range(200):  # bounded: the queue is dropped at once, before those under way end
        if [f.cancelled() for f in told].count(True) == 6:
            break
        clock.sleep(0.05)
    release.set()
    stopping.join(30)
    assert not stopping.is_alive()
    assert [f.cancelled() for f in told].count(True) == 6
    assert [f.result() for f in told if not f.cancelled()] == [
        ["simpang-aur-mikrotik: Disconnect-Request no answer"]
    ] * 4


def test_a_kick_or_a_block_through_the_controller_tells_the_router_through_its_port(
    database, nas_ctx, fw, now
):
    """Every way an admin ends a NAS-mode session (the dashboard asks the controller)
    reaches the router through the one Disconnect port the controller was given."""
    import threading

    from controller.daemon.controller import Controller
    from controller.gateway.neighbours import MemoryNeighbours
    from controller.store.models import EndReason

    told, seen = [], threading.Semaphore(0)

    def disconnect(config, ended):
        told.extend((s.id, s.end_reason) for s in ended)
        seen.release()
        return [f"router: told of {len(ended)}"]

    kicked = admit(database, nas_ctx, now, code := code_for(database, nas_ctx, now), code)
    other = code_for(database, nas_ctx, now)
    blocked = admit(database, nas_ctx, now, other, other, mac="3C-5A-B4-00-00-02", ip="10.5.50.22")
    controller = Controller(database, nas_ctx, fw, MemoryNeighbours(), disconnect=disconnect)
    try:
        controller.end_session(str(kicked.session_id), EndReason.KICKED, now, actor="web:budi")
        controller.block("3C-5A-B4-00-00-02", "abuse", None, "web:budi", now)
        assert seen.acquire(timeout=10) and seen.acquire(timeout=10)
    finally:
        controller.close()
    assert sorted(told) == sorted([(kicked.session_id, "kicked"), (blocked.session_id, "blocked")])


def test_the_clients_of_a_busy_city_come_back_whole_over_the_socket(
    database, nas_ctx, fw, now, tmp_path
):
    """`wifikota clients` at a festival: thousands of open sessions in one answer line
    (each about 350 bytes) come back whole, not as "the controller gave no answer"."""
    from controller.daemon import control, protocol
    from controller.daemon.controller import Controller
    from controller.gateway.neighbours import MemoryNeighbours
    from controller.services import logins

    phones = [
        logins.LoginRequest(SITE, f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                            f"10.5.{i >> 8}.{i & 255}", "click")
        for i in range(2_500)
    ]  # fmt: skip
    with database.uow(write=True) as uow:
        assert not any(
            isinstance(o, Exception) for o in logins.start_many(uow, nas_ctx, phones, now)
        )
        uow.commit()
    controller = Controller(database, nas_ctx, fw, MemoryNeighbours())
    server = control.serve(controller, str(tmp_path / "control.sock"))
    try:
        listed = control.Client(str(tmp_path / "control.sock")).ask(protocol.ListClients())
    finally:
        server.shutdown()
        server.server_close()
        controller.close()
    assert len(listed.clients) == 2_500
