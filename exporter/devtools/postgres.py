"""A throwaway PostgreSQL server for the tests and the history benchmark.

Debian's own binaries (the `postgresql` package), a cluster made by initdb in a temporary
folder and run by pg_ctl on a free port of 127.0.0.1; as root, both run as the postgres
user, because the server refuses to run as root. Never used by `serve`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

# A role that must give its password (scram-sha-256): the tests of history.password_env.
PASSWORD_ROLE, PASSWORD = "gateway", "gateway-secret"


def bindir() -> str | None:
    """The folder of initdb and pg_ctl: on the PATH, else Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(versions[-1]) if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One cluster: start() it, make databases in it, stop() it (the folder goes too).

    `durable=False` turns fsync off: the tests' speed. The benchmark keeps it on, as a
    real server runs.
    """

    def __init__(self, durable: bool = False):
        self.bin = bindir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL's initdb and pg_ctl (Debian: apt-get install "
                                    "postgresql)")
        self.durable = durable
        self.folder = tempfile.mkdtemp(prefix="llm-usage-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = 0
        self.user = "postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if not self._as:  # the cluster's superuser is whoever runs it
            self.user = os.environ.get("USER") or "postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{os.path.basename(args[0])}: {done.stderr.strip()}")

    def _pg_ctl(self, *args: str) -> None:
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-s", *args)

    def halt(self) -> None:
        """Stop the server, keeping its data: an outage (resume() ends it)."""
        self._pg_ctl("-m", "fast", "stop")

    def resume(self) -> None:
        """Start it again on the same port, with the same data."""
        self._pg_ctl("-l", os.path.join(self.folder, "server.log"), "start")

    def start(self) -> str:
        """Make the cluster and start it; return the superuser's URL of database postgres."""
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.user,
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as hba:
            hba.write(f"local all all trust\n"
                      f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
                      f"host all all 127.0.0.1/32 trust\n")
        settings = {"listen_addresses": "'127.0.0.1'",
                    "unix_socket_directories": f"'{self.folder}'", "max_connections": "200"}
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        for _ in range(5):  # a free port may be taken before the server binds it
            self.port = free_port()
            # In the cluster's own settings (the last of a name wins), so resume() starts
            # it as it was.
            with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as conf:
                conf.writelines(f"{k} = {v}\n" for k, v in {**settings,
                                                            "port": str(self.port)}.items())
            try:
                self.resume()
                break
            except RuntimeError:
                if "could not bind" not in self.log():
                    raise
        self.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        return self.url("postgres")

    def url(self, database: str, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, owner: str | None = None) -> str:
        """A new, empty database; its URL (as `owner`, given)."""
        self.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        return self.url(name, owner)

    def log(self) -> str:
        try:
            with open(os.path.join(self.folder, "server.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.port:
            subprocess.run([*self._as, os.path.join(self.bin, "pg_ctl"), "-D", self.data,
                            "-m", "immediate", "-w", "-s", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
