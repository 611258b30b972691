"""Scheduled reports: made once per period at their time in their zone (one where the month
starts on the previous UTC day), not again after a restart, retried after a failed
delivery, and delivered to a directory, a webhook and a local SMTP server."""

from __future__ import annotations

import asyncio
import email
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from exporter.config.load import parse_config
from exporter.config.schema import ConfigError
from exporter.reports.deliver import Deliverer
from exporter.reports.make import render_apart
from exporter.reports.schedule import Period, Scheduler, latest
from exporter.store.database import Database
from exporter.telemetry.background import ReportMetrics

TOKYO = ZoneInfo("Asia/Tokyo")  # Dec 1 00:00 in Tokyo is Nov 30 15:00 UTC


def t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def report(**keys):
    base = {"services": [{"name": "openai", "base_url": "http://x"}], "timezone": "Asia/Tokyo"}
    config = parse_config({**base, **keys.pop("top", {}), "reports": [
        {"name": "monthly-cost", "schedule": "monthly", "type": "cost", **keys}]},
        env={"SMTP_USER": "reports", "SMTP_PASSWORD": "secret"})
    return config.reports[0], config


@pytest.mark.parametrize("schedule,now,period", [
    # Monthly at 08:00 on the 1st in Tokyo: before it, October's; from it, November's.
    ({"schedule": "monthly"}, "2026-11-30T22:59:00+00:00",
     ("2026-10-01T00:00:00+09:00", "2026-11-01T00:00:00+09:00", "2026-11-01T08:00:00+09:00")),
    ({"schedule": "monthly"}, "2026-11-30T23:00:00+00:00",
     ("2026-11-01T00:00:00+09:00", "2026-12-01T00:00:00+09:00", "2026-12-01T08:00:00+09:00")),
    # Daily at 06:30: the day before.
    ({"schedule": "daily", "at": "06:30"}, "2026-12-03T21:31:00+00:00",
     ("2026-12-03T00:00:00+09:00", "2026-12-04T00:00:00+09:00", "2026-12-04T06:30:00+09:00")),
    # Weekly on Wednesdays: the Monday-to-Sunday week before (Dec 2 2026 is a Wednesday).
    ({"schedule": "weekly", "weekday": "wednesday"}, "2026-12-04T00:00:00+00:00",
     ("2026-11-23T00:00:00+09:00", "2026-11-30T00:00:00+09:00", "2026-12-02T08:00:00+09:00")),
])
def test_the_period_of_the_latest_run(schedule, now, period):
    r, _ = report(directory=".", **schedule)
    assert latest(r, t(now), TOKYO) == Period(*(t(p) for p in period))


async def webhook(aiohttp_server, answers: list[int]):
    """A receiver answering the statuses given, in turn; it keeps what it was sent."""
    received = []

    async def take(request):
        form = await request.post()
        received.append((form["file"].filename, form["file"].file.read()))
        return web.Response(status=answers.pop(0) if answers else 200)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/reports", take)
    server = await aiohttp_server(app)
    return str(server.make_url("/reports")), received


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"


async def test_made_once_on_the_first_in_its_zone_retried_and_delivered_everywhere(
        aiohttp_server, tmp_path, unused_tcp_port, db):
    db.migrate()
    url, received = await webhook(aiohttp_server, [500])  # the first POST fails
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=unused_tcp_port)
    smtp.start()
    out = tmp_path / "out"
    out.mkdir()
    r, config = report(directory=str(out), webhook_url=url, email_to=["finance@example.com"],
                       top={"smtp": {"host": "127.0.0.1", "port": unused_tcp_port,
                                     "sender": "llm@example.com", "starttls": False}})
    with db.connect(write=True) as conn:  # October's was delivered before
        conn.execute("INSERT INTO reports_sent VALUES (?, ?, ?)",
                     ["monthly-cost", t("2026-10-01T00:00:00+09:00"), 0])
    clock = {"now": t("2026-11-30T22:00:00+00:00")}  # Dec 1 07:00 in Tokyo
    registry = CollectorRegistry()
    metrics = ReportMetrics(registry)

    def scheduler():
        return Scheduler(config.reports, db, render_apart, Deliverer(config.smtp, {}),
                         metrics.reports, config.timezone, clock=lambda: clock["now"])

    def count(outcome):
        return registry.get_sample_value("llm_reports_total",
                                         {"report": "monthly-cost", "outcome": outcome})

    try:
        first = scheduler()
        await first.tick()
        assert (count("delivered"), count("failed"), received) == (0, 0, [])
        clock["now"] = t("2026-12-01T08:00:00+09:00")
        await first.tick()  # due: the webhook fails, the directory and the mail are done
        name = "monthly-cost-2026-11-01-to-2026-12-01.pdf"
        assert (count("delivered"), count("failed")) == (0, 1)
        assert [p.name for p in out.iterdir()] == [name]
        assert len(mailbox.messages) == 1 and len(received) == 1
        clock["now"] += 30
        await first.tick()  # within the backoff (1 minute): nothing
        assert len(received) == 1
        clock["now"] += 31
        await first.tick()  # tried again: only the webhook, which takes it now
        assert (count("delivered"), count("failed")) == (1, 1)
        assert len(received) == 2 and len(mailbox.messages) == 1
        assert received[1][0] == name and received[1][1].startswith(b"%PDF")
        rcpt, message = mailbox.messages[0]
        assert rcpt == ["finance@example.com"] and message["From"] == "llm@example.com"
        [attachment] = [p for p in message.walk() if p.get_filename() == name]
        assert attachment.get_payload(decode=True).startswith(b"%PDF")
        await first.tick()
        clock["now"] += 86400
        await scheduler().tick()  # a restart, a day later: November's was delivered
        assert len(received) == 2 and count("delivered") == 1
    finally:
        smtp.stop()


async def test_a_webhook_can_be_posted_a_link_instead(aiohttp_server, db):
    db.migrate()
    posted = []

    async def take(request):
        posted.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", take)
    server = await aiohttp_server(app)
    r, config = report(webhook_url=str(server.make_url("/hook")), format="xlsx",
                       link_base="https://gw.example.com:9464/", service="openai")
    scheduler = Scheduler(config.reports, db, render_apart, Deliverer(None, {}),
                          ReportMetrics(CollectorRegistry()).reports, config.timezone,
                          clock=lambda: t("2026-12-01T08:00:00+09:00"))
    await scheduler.tick()
    start, end = int(t("2026-11-01T00:00:00+09:00")), int(t("2026-12-01T00:00:00+09:00"))
    assert posted == [{"report": "monthly-cost",
                       "file": "monthly-cost-2026-11-01-to-2026-12-01.xlsx",
                       "url": f"https://gw.example.com:9464/api/report?type=cost&format=xlsx&"
                              f"from={start}&to={end}&tz=Asia%2FTokyo&service=openai"}]


def problems(schedule: str, missing: str) -> list[str]:
    """What check-config says of a report without a destination and a second one."""
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "openai", "base_url": "http://x"}], "reports": [
            {"name": "a", "schedule": "daily"},
            {"name": "a", "schedule": schedule, "email_to": ["x@example.com"],
             "directory": missing}]})
    return e.value.problems


def test_a_report_that_cannot_be_delivered_is_a_config_error(tmp_path):
    missing = str(tmp_path / "missing")
    assert problems("hourly", missing) == [
        "reports[1].schedule: must be one of daily, weekly, monthly"]
    assert problems("weekly", missing) == [
        "reports[0]: set a directory, a webhook_url or email_to",
        "reports[1].name: duplicate report name 'a'",
        f"reports[1].directory: {missing} is not a directory",
        "reports[1].email_to: needs smtp: the mail server"]


async def test_the_schedule_survives_a_history_not_yet_there(tmp_path, caplog):
    r, config = report(directory=str(tmp_path))
    scheduler = Scheduler(config.reports, Database(str(tmp_path / "none.db")), render_apart,
                          Deliverer(None, {}), ReportMetrics(CollectorRegistry()).reports,
                          "UTC")
    task = asyncio.create_task(scheduler.run())
    async with asyncio.timeout(10):
        while "the history cannot be read" not in caplog.text:
            await asyncio.sleep(0.01)
    task.cancel()
    assert not (tmp_path / "none.db").exists()  # not created by the schedule


async def test_mail_goes_over_starttls_with_a_login(tmp_path, unused_tcp_port, monkeypatch):
    import ssl

    import trustme
    from aiosmtpd.smtp import AuthResult
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # what the client trusts
    logins = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"secret")

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=unused_tcp_port,
                      tls_context=server_tls, require_starttls=True,
                      authenticator=authenticate, auth_require_tls=True)
    smtp.start()
    try:
        r, config = report(email_to=["cfo@example.com"], top={"smtp": {
            "host": "127.0.0.1", "port": unused_tcp_port, "sender": "llm@example.com",
            "user_env": "SMTP_USER", "password_env": "SMTP_PASSWORD"}})
        deliver = Deliverer(config.smtp, {"SMTP_USER": "reports", "SMTP_PASSWORD": "secret"})
        sent = set()
        filters = latest_filters(r)
        assert await asyncio.to_thread(deliver, r, b"%PDF-1.4 test", filters, sent) == []
        assert sent == {"email"} and logins == [(b"reports", b"secret")]
        assert mailbox.messages[0][0] == ["cfo@example.com"]
    finally:
        smtp.stop()


def latest_filters(r):
    from exporter.store.query import Filters
    period = latest(r, t("2026-12-04T00:00:00+00:00"), TOKYO)
    return Filters(period.start, period.end, TOKYO)
