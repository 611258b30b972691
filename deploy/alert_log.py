"""Alertmanager's webhook receiver in docker-compose.yml: one log line per alert.

The shipped alertmanager.yml sends every route to http://127.0.0.1:5001/alertmanager; in
the compose stack this runs in Alertmanager's network namespace, so that address reaches
it, and `docker compose logs -f alert-log` shows what would have been sent. Replace the
webhooks with your Slack, e-mail or PagerDuty receivers for real use.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def lines(payload: dict) -> list[str]:
    """`FIRING LLMBudgetWarning severity=warning api_key=x: description` per alert."""
    out = []
    for alert in payload.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        name = labels.pop("alertname", "?")
        shown = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        about = alert.get("annotations", {}).get("description", "")
        out.append(f"{alert.get('status', '?').upper()} {name} {shown}: {about}")
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            for line in lines(json.loads(body)):
                print(line, flush=True)
            self.send_response(200)
        except (ValueError, AttributeError):
            self.send_response(400)
        self.end_headers()

    def log_message(self, *args):
        pass  # the alerts are the log; not every request


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5001
    server = HTTPServer(("127.0.0.1", port), Handler)
    print(f"alert-log: listening on 127.0.0.1:{port}/alertmanager", flush=True)  # bound now
    server.serve_forever()
