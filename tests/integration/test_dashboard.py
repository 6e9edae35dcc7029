"""The dashboard over real HTTP (``dev-sessions dashboard`` in a subprocess): who gets in, what every
request must carry, and that nothing secret reaches its log. The pages in a real browser, with the
real Claude: ``tests/e2e/test_dashboard.py``."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dev_sessions.dashboard.hub import IDLE_LOOK_S
from tests.conftest import DevSessions, eventually, one_line_error
from tests.fakes.dashboard import Served, start


@pytest.fixture
def served(cli: DevSessions) -> Iterator[Served]:
    server = start(cli)
    yield server
    server.process.process.terminate()
    server.process.finish()


GETS = [
    "/",
    "/s/fizz-top",
    "/messages",
    "/messages?q=x",
    "/events/sessions",
    "/events/s/fizz-top",
    "/events/messages",
]
POSTS = [
    "/s/fizz-top/send",
    "/s/fizz-top/respond",
    "/s/fizz-top/interrupt",
    "/s/fizz-top/kill",
    "/messages/send",
    "/logout",
]


def test_nothing_is_served_without_the_cookie(served: Served) -> None:
    for path in GETS:
        status, headers, text = served.request("GET", path)
        assert status == 401, path
        assert "dev-sessions dashboard" in text, path  # says how to log in
        assert "set-cookie" not in headers
    for path in POSTS:
        assert served.request("POST", path, body="text=hi")[0] == 401, path
    # A cookie that is not one of ours is no better.
    for path in GETS:
        assert served.request("GET", path, cookie=f"dev_sessions_{served.port}=forged")[0] == 401, path
    # Only the page's script and style sheet (the same for everyone) are served to anyone.
    assert served.request("GET", "/static/dashboard.js")[0] == 200
    assert served.request("GET", "/static/dashboard.css")[0] == 200
    assert served.request("GET", "/static/../auth.py")[0] in (401, 404)


def test_the_login_code_works_once_and_gives_a_strict_httponly_cookie(served: Served) -> None:
    status, headers, _ = served.request("GET", f"/login?code={served.code}")
    assert status == 303 and headers["location"] == "/"  # the URL without the code
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"dev_sessions_{served.port}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    value = cookie.split(";", 1)[0]
    assert served.request("GET", "/", cookie=value)[0] == 200
    assert served.request("GET", "/events/sessions", cookie=value)[0] == 200
    again = served.request("GET", f"/login?code={served.code}")
    assert again[0] == 401 and "set-cookie" not in again[1]
    assert served.request("GET", "/login?code=not-a-code")[0] == 401
    assert served.request("GET", "/login")[0] == 401


def test_a_login_code_expires(served: Served, cli: DevSessions) -> None:
    fresh = start(cli)  # the running one is found: a new code for it, nothing started
    assert fresh.port == served.port
    assert fresh.process.finish().returncode == 0
    assert "already running for this state directory" in fresh.process.stderr
    codes = Path(os.environ["DEV_SESSIONS_HOME"]) / "dashboard" / "login"
    for path in codes.iterdir():  # make every code ten minutes old
        os.utime(path, (time.time() - 600, time.time() - 600))
    assert served.request("GET", f"/login?code={fresh.code}")[0] == 401
    assert served.request("GET", f"/login?code={served.code}")[0] == 401


def test_a_second_dashboard_gives_a_new_login_url_for_the_running_one(
    served: Served, cli: DevSessions
) -> None:
    served.login()
    second = start(cli)
    result = second.process.finish()
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1
    assert f"http://127.0.0.1:{served.port}" in result.stderr
    assert second.code != served.code
    assert served.login(second.code).startswith(f"dev_sessions_{served.port}=")


def test_log_out_ends_the_cookie_and_its_open_streams(served: Served) -> None:
    cookie = served.login()
    token = served.csrf(cookie)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/events/sessions", headers={"Host": f"127.0.0.1:{served.port}", "Cookie": cookie})
    stream = conn.getresponse()
    seen = ""
    while "event: sessions" not in seen:
        seen += stream.read1(65536).decode()
    status, headers, _ = served.request("POST", "/logout", cookie=cookie, headers={"X-CSRF-Token": token})
    assert status == 200 and headers["set-cookie"].startswith(f'dev_sessions_{served.port}=""')
    # The page left open in another tab gets nothing more: its stream ends (then it is refused).
    after: list[bytes] = []
    reader = threading.Thread(target=lambda: after.extend(iter(lambda: stream.read1(65536), b"")))
    reader.start()
    try:
        assert eventually(lambda: not reader.is_alive(), 30), "the stream outlived the log out"
    finally:
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        reader.join()
        conn.close()
    assert b"event:" not in b"".join(after)
    assert served.request("GET", "/", cookie=cookie)[0] == 401
    assert served.request("GET", "/events/sessions", cookie=cookie)[0] == 401


def test_a_new_login_ends_the_browser_s_old_cookie(served: Served, cli: DevSessions) -> None:
    old = served.login()
    second = start(cli)
    second.process.finish()
    status, headers, _ = served.request("GET", f"/login?code={second.code}", cookie=old)
    assert status == 303
    new = headers["set-cookie"].split(";", 1)[0]
    assert new != old
    assert served.request("GET", "/", cookie=new)[0] == 200
    assert served.request("GET", "/", cookie=old)[0] == 401


def test_every_post_needs_the_csrf_token(served: Served) -> None:
    cookie = served.login()
    token = served.csrf(cookie)
    for path in POSTS:
        assert served.request("POST", path, cookie=cookie, body="text=hi&to=user&body=hi")[0] == 403, path
        wrong = {"X-CSRF-Token": "x" + token}
        assert served.request("POST", path, cookie=cookie, headers=wrong, body="to=user&body=hi")[0] == 403
        assert served.request("POST", path, cookie=cookie, body=f"csrf=x{token}&to=user&body=hi")[0] == 403
    # The token as a header (the page's script) or as the form's hidden field (no script) both do.
    status, _, text = served.request(
        "POST", "/messages/send", cookie=cookie, headers={"X-CSRF-Token": token}, body="to=user&body=hello"
    )
    assert status == 200 and json.loads(text) == {"ok": True, "message": "sent #1 as user"}
    status, headers, _ = served.request(
        "POST", "/messages/send", cookie=cookie, body=f"csrf={token}&to=user&body=again"
    )
    assert status == 303 and headers["location"].startswith("/messages")
    # An action on a session that does not exist passes the checks and fails as itself.
    status, _, text = served.request(
        "POST", "/s/fizz-top/interrupt", cookie=cookie, headers={"X-CSRF-Token": token}, body=""
    )
    assert status == 404 and "fizz-top" in json.loads(text)["message"]


def test_host_and_origin_are_checked_as_by_the_gateway(served: Served) -> None:
    cookie = served.login()
    token = served.csrf(cookie)
    own = f"http://127.0.0.1:{served.port}"
    assert served.request("GET", "/", cookie=cookie, headers={"Host": "evil.example"})[0] == 403
    assert served.request("GET", "/", cookie=cookie, headers={"Host": f"localhost:{served.port}"})[0] == 200
    assert served.request("GET", "/", cookie=cookie, headers={"Host": "127.0.0.1:1:2"})[0] == 400
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{served.port + 1}"):
        status = served.request(
            "POST", "/messages/send", cookie=cookie, headers={"Origin": origin, "X-CSRF-Token": token},
            body="to=user&body=x",
        )[0]  # fmt: skip
        assert status == 403, origin
    assert served.request("GET", "/", cookie=cookie, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert served.request("GET", "/login?code=" + served.code, headers={"Host": "evil.example"})[0] == 403
    # A page of its own may post (browsers send Origin on every POST).
    same = {"Origin": own, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token}
    status = served.request("POST", "/messages/send", cookie=cookie, headers=same, body="to=user&body=x")[0]
    assert status == 200


def test_nothing_secret_reaches_the_log(served: Served) -> None:
    cookie = served.login()
    token = served.csrf(cookie)
    served.request("GET", "/login?code=" + served.code)  # used: refused
    served.request("GET", "/messages?q=secret-search", cookie=cookie)
    served.request(
        "POST", "/messages/send", cookie=cookie, headers={"X-CSRF-Token": token}, body="to=user&body=b0dy"
    )
    served.request("GET", "/", cookie=cookie + "x")
    eventually(lambda: served.process.stderr.count("POST /messages/send") == 1)
    log = served.process.stderr
    for secret in (served.code, cookie.split("=", 1)[1], token, "secret-search", "b0dy"):
        assert secret not in log
    assert "GET /login 401" in log and "Traceback" not in log


def test_a_request_path_cannot_write_control_characters_into_the_log(served: Served) -> None:
    # Any web page can make the browser ask the dashboard for a path (an <img>), cookie or not, and
    # aiohttp decodes %1b in it: the log line, printed on the user's terminal, must show it as text.
    served.request("GET", "/%1b]0;pwned%07%1b%5b2J%0d%0aforged%20200%200ms")
    eventually(lambda: "pwned" in served.process.stderr)
    log = served.process.stderr
    assert "\x1b" not in log and "\x07" not in log and "\r" not in log
    assert "␛]0;pwned␇␛[2J␍␊forged" in log
    assert not any(line.startswith("forged") for line in log.splitlines())


def test_sessions_and_messages_are_pushed_to_open_streams(
    fake_claude: Path, cli: DevSessions, served: Served
) -> None:
    cookie = served.login()
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/events/sessions", headers={"Host": f"127.0.0.1:{served.port}", "Cookie": cookie})
    stream = conn.getresponse()
    assert stream.status == 200
    first = ""
    while "event: sessions" not in first:
        first += stream.read1(65536).decode()
    assert "No sessions" in first
    sid = cli.ok("create", "-q", "--description", "<b>bold</b> & more").strip()
    seen = ""
    while f'id=\\"row-{sid}\\"' not in seen:  # pushed, no request made: the stream's next event
        seen += stream.read1(65536).decode()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in seen and "<b>bold</b>" not in seen
    conn.close()
    conn.request("GET", "/events/messages", headers={"Host": f"127.0.0.1:{served.port}", "Cookie": cookie})
    stream = conn.getresponse()
    assert stream.status == 200
    assert stream.read1(65536).decode() == "retry: 2000\n\n"
    cli.ok("msg", "send", "--to", sid, "hello")
    seen = ""
    while "event: changed" not in seen:
        seen += stream.read1(65536).decode()
    conn.close()


def test_the_messages_pages_follow_a_message_sent_elsewhere_on_either_engine(
    messages_url: str | None, cli: DevSessions
) -> None:
    """Another process sends (on a server: as another machine would); the open messages page is told,
    and shows it. On SQLite ``messages.db`` changes; on PostgreSQL nothing here does: the server's
    push wakes the dashboard, and the store says the messages moved."""
    cli.ok("agents", "register", "someone")
    served = start(cli)  # after messages_url: it runs on the engine under test
    try:
        cookie = served.login()
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        headers = {"Host": f"127.0.0.1:{served.port}", "Cookie": cookie}
        conn.request("GET", "/events/messages", headers=headers)
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.read1(65536).decode() == "retry: 2000\n\n"  # followed from now on
        started = time.monotonic()
        cli.ok("msg", "send", "--from", "someone", "--to", "user", "from elsewhere")
        seen = ""
        # Told at once, not by the look the dashboard takes anyway once a minute (IDLE_LOOK_S); a
        # keep-alive comes every 15 s meanwhile.
        while "event: changed" not in seen and time.monotonic() - started < IDLE_LOOK_S / 2:
            seen += stream.read1(65536).decode()
        assert "event: changed" in seen
        conn.close()
        status, _, page = served.request("GET", "/messages?as=user", cookie=cookie)
        assert status == 200 and "from elsewhere" in page and "unread" in page
    finally:
        served.process.process.terminate()
        served.process.finish()


def test_a_port_in_use_is_one_line(cli: DevSessions) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        one_line_error(cli("dashboard", "--port", str(port)), 1, f"port {port} is in use", "--port")


def test_the_login_url_is_on_127_0_0_1(served: Served) -> None:
    assert urlsplit(served.base).hostname == "127.0.0.1"
    with pytest.raises(OSError), socket.create_connection(("::1", served.port), timeout=2):
        pass
