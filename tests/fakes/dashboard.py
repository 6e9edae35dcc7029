"""A ``dev-sessions dashboard`` running in a subprocess, and plain HTTP requests to it (the tests of
the dashboard, ``tests/integration/test_dashboard.py`` and ``tests/e2e/test_dashboard.py``)."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass

from tests.conftest import DevSessions, Running, eventually

URL = re.compile(r"^(http://127\.0\.0\.1:(\d+))/login\?code=([A-Za-z0-9_-]+)$", re.M)


@dataclass
class Served:
    process: Running
    base: str
    port: int
    code: str

    def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if cookie:
            sent["Cookie"] = cookie
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        # An event stream never ends: read what came at once (the first events), not until EOF.
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            text = response.read1(65536).decode()
        else:
            text = response.read().decode()
        found = {k.lower(): v for k, v in response.getheaders()}
        conn.close()
        return response.status, found, text

    def login(self, code: str | None = None) -> str:
        """The cookie (``name=value``) that a login with ``code`` (the printed one) gives."""
        status, headers, _ = self.request("GET", f"/login?code={code or self.code}")
        assert status == 303 and headers["location"] == "/", (status, headers)
        return headers["set-cookie"].split(";", 1)[0]

    def csrf(self, cookie: str) -> str:
        status, _, page = self.request("GET", "/", cookie=cookie)
        assert status == 200
        match = re.search(r'<meta name="csrf" content="([^"]+)">', page)
        assert match
        return match.group(1)


def start(cli: DevSessions, *args: str) -> Served:
    process = cli.start("dashboard", "--port", "0", *args)
    found = eventually(lambda: URL.search(process.stdout) or process.process.poll() is not None, 20)
    assert isinstance(found, re.Match), f"no login URL: {process.stdout} {process.stderr}"
    return Served(process, found.group(1), int(found.group(2)), found.group(3))
