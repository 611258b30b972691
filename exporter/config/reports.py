"""The keys of scheduled reports and of the mail server that sends them (table.py's part)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .checks import check_env_var, check_name, check_timezone, check_url, one_of
from .schema import setting

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _clock(v):
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
        return "must be HH:MM, e.g. 08:00"


def _day(v):
    if not 1 <= v <= 28:
        return "must be 1 to 28 (every month has it)"


@dataclass(frozen=True)
class Smtp:
    """The mail server that sends scheduled reports."""

    host: str = setting(doc="SMTP server host")
    sender: str = setting(doc="the From address")
    port: int = setting(587, "SMTP port (587 with STARTTLS, 25 without)")
    starttls: bool = setting(True, "upgrade the connection with STARTTLS before logging in")
    user_env: str | None = setting(None, "environment variable holding the login",
                                   check=check_env_var)
    password_env: str | None = setting(None, "environment variable holding the password",
                                       check=check_env_var)


@dataclass(frozen=True)
class ScheduledReport:
    """A report made on a schedule, for the period before it, and delivered."""

    name: str = setting(doc="the `report` label, and the report's name in its file name",
                        check=check_name)
    schedule: str = setting(doc="daily (the day before), weekly (the week before, Monday "
                            "to Sunday) or monthly (the month before)",
                            check=one_of("daily", "weekly", "monthly"))
    type: str = setting("summary", "summary, cost, trend or detailed",
                        check=one_of("summary", "cost", "trend", "detailed"))
    format: str = setting("pdf", "pdf or xlsx", check=one_of("pdf", "xlsx"))
    at: str = setting("08:00", "time of day it is made, in its zone", check=_clock)
    weekday: str = setting("monday", "weekly: the day it is made", check=one_of(*WEEKDAYS))
    day: int = setting(1, "monthly: the day of the month it is made", check=_day)
    timezone: str | None = setting(None, "its zone: of the schedule and of the period's days "
                                   "(default: the gateway's timezone)", check=check_timezone)
    service: str | None = setting(None, "only this service (or a comma-separated list)")
    provider: str | None = setting(None, "only this provider (or a comma-separated list)")
    model: str | None = setting(None, "only this model (or a comma-separated list)")
    api_key: str | None = setting(None, "only this api_key (or a comma-separated list)")
    directory: str | None = setting(None, "write the file into this directory")
    webhook_url: str | None = setting(None, "POST the file to this URL (multipart/form-data, "
                                      "field `file`)")
    link_base: str | None = setting(None, "with webhook_url: POST a link instead of the file, "
                                    "to /api/report at this admin URL (e.g. "
                                    "https://llm-gateway.example.com:9464)", check=check_url)
    email_to: tuple[str, ...] = setting((), "mail it to these addresses (needs smtp)")
