"""nginx as a plain reverse proxy to the simulated upstream: what proxying alone costs.

The benchmark runs it beside the gateway, on the same core and in front of the same
upstream, so what the gateway adds beyond any proxy's two more reads and writes (parsing,
metering, accounting, its history row) shows apart. Debian's package; without it the
benchmark runs without this target.
"""

from __future__ import annotations

import os
import shutil
import subprocess

# master_process off: one process, run as whoever runs the benchmark (a master started as
# root hands its worker to another user, who could not open the private temp directory),
# and one pid to read the CPU of, as the gateway's one worker. keepalive_requests: nginx
# closes a connection after 1,000 requests by default, and the benchmark's own client sends
# its next request on the same connection; the gateway keeps connections for as long as
# they live. keepalive 128 keeps as many upstream connections idle as the highest
# concurrency measured, as the gateway's pool does (it has no cap). proxy_buffering off
# relays each read of a stream as it comes, as the gateway does. The temporary paths:
# Debian's build puts them in /var/lib/nginx, which only root may write.
CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
error_log stderr error;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream simulator {{
        server 127.0.0.1:{upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://simulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def binary() -> str | None:
    """Debian's nginx: on the PATH, or in /usr/sbin, which is not on a user's PATH."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def version(path: str) -> str:
    """The version nginx reports (on stderr: "nginx version: nginx/1.22.1")."""
    done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stderr or done.stdout).strip().rpartition("/")[2]


def start(path: str, directory: str, listen: int, upstream: int,
          preexec=None) -> subprocess.Popen:
    """Start nginx on 127.0.0.1:listen in front of 127.0.0.1:upstream; its files in directory.

    `-e stderr`: the error log opened before the configuration is read is otherwise the one
    compiled in, which some builds put in /var/log/nginx, writable only by root.
    """
    directory = os.path.abspath(directory)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(CONFIG.format(dir=directory, listen=listen, upstream=upstream))
    return subprocess.Popen([path, "-p", directory + "/", "-c", conf, "-e", "stderr"],
                            preexec_fn=preexec)
