"""Deliver a report file: into a directory, to a webhook, by e-mail over SMTP.

The standard library does it all (urllib, smtplib), in a worker thread: a gateway process
loads no HTTP client library for this. Each destination succeeds or fails on its own.
"""

from __future__ import annotations

import json
import os
import secrets
import smtplib
import ssl
import urllib.parse
import urllib.request
from email.message import EmailMessage

from ..config.reports import ScheduledReport, Smtp
from ..store.query import Filters
from .make import MEDIA_TYPES, period_name

TIMEOUT = 60  # seconds for a webhook or a mail server to take the file


class Deliverer:
    """Send a report to each of its destinations; `env` holds the SMTP login."""

    def __init__(self, smtp: Smtp | None, env):
        self.smtp, self.env = smtp, env

    def __call__(self, r: ScheduledReport, body: bytes, filters: Filters,
                 sent: set) -> list[str]:
        """Deliver to each destination not in `sent` (adding those that worked); return
        what failed, one line each."""
        name = f"{r.name}-{period_name(filters)}.{r.format}"
        failed = []
        for destination, send in (("directory", r.directory and self._directory),
                                  ("webhook", r.webhook_url and self._webhook),
                                  ("email", r.email_to and self._email)):
            if not send or destination in sent:
                continue
            try:
                send(r, name, body, filters)
                sent.add(destination)
            except (OSError, smtplib.SMTPException, ValueError) as e:
                failed.append(f"{destination}: {type(e).__name__}: {e}")
        return failed

    @staticmethod
    def _directory(r: ScheduledReport, name: str, body: bytes, filters: Filters) -> None:
        path = os.path.join(r.directory, name)
        with open(path + ".part", "wb") as f:  # whole or not at all
            f.write(body)
        os.replace(path + ".part", path)

    @staticmethod
    def _webhook(r: ScheduledReport, name: str, body: bytes, filters: Filters) -> None:
        if r.link_base:  # a link to the same report on the admin API, as JSON
            query = urllib.parse.urlencode({
                "type": r.type, "format": r.format, "from": int(filters.start),
                "to": int(filters.end), "tz": filters.tz.key,
                **{column: ",".join(values) for column, values in filters.equal}})
            link = f"{r.link_base.rstrip('/')}/api/report?{query}"
            data = json.dumps({"report": r.name, "file": name, "url": link}).encode()
            headers = {"Content-Type": "application/json"}
        else:
            boundary = secrets.token_hex(16)
            data = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f'filename="{name}"\r\nContent-Type: {MEDIA_TYPES[r.format]}\r\n\r\n'
                    ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        request = urllib.request.Request(r.webhook_url, data=data, method="POST", headers={
            **headers, "User-Agent": "llm-usage-exporter"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # 4xx/5xx raise
            answer.read()

    def _email(self, r: ScheduledReport, name: str, body: bytes, filters: Filters) -> None:
        if self.smtp is None:
            raise ValueError("no smtp: is configured")
        message = EmailMessage()
        message["Subject"] = f"LLM usage: {r.name} ({name})"
        message["From"], message["To"] = self.smtp.sender, ", ".join(r.email_to)
        message.set_content(f"The {r.type} report {name} is attached.\n\n-- llm-usage-exporter")
        maintype, subtype = MEDIA_TYPES[r.format].split("/", 1)
        message.add_attachment(body, maintype=maintype, subtype=subtype, filename=name)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=TIMEOUT) as server:
            if self.smtp.starttls:
                server.starttls(context=ssl.create_default_context())
            user = self.env.get(self.smtp.user_env) if self.smtp.user_env else None
            if user:
                password = self.env.get(self.smtp.password_env or "", "")
                server.login(user, password)
            server.send_message(message)
