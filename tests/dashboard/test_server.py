"""The dashboard HTTP server on its own: token, host check, routes, loop hand-off."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from node.base.settings import ConfigError, NodeSettings, load_settings
from node.dashboard import DashboardError, DashboardServer, TrafficHistory, dashboard_url

TOKEN = "s3cret-token_value"

Get = Callable[..., tuple[int, dict[str, str], bytes]]


class LoopThread:
    """A real asyncio loop in a thread, standing in for the daemon's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.calls: list[str] = []

    def collect(self) -> dict[str, Any]:
        # Must run on the loop's thread: that is the whole point of the hand-off.
        self.calls.append(threading.current_thread().name)
        asyncio.get_running_loop()  # raises RuntimeError off the loop
        return {"schema": 1, "value": float(len(self.calls))}

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[tuple[DashboardServer, LoopThread]]:
    lt = LoopThread()
    rejected: list[int] = []
    server = DashboardServer(
        "127.0.0.1:0", TOKEN, lt.collect, lt.loop, on_reject=lambda: rejected.append(1)
    )
    server.start()
    server.rejected = rejected  # type: ignore[attr-defined]
    try:
        yield server, lt
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), lt.loop).result(5)
        lt.close()


def test_state_is_collected_on_the_loop_thread(
    served: tuple[DashboardServer, LoopThread], http_get: Get
) -> None:
    server, lt = served
    status, headers, body = http_get(server.url + "api/state", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body) == {"schema": 1, "value": 1.0}
    assert lt.calls == [lt.thread.name]


@pytest.mark.parametrize(
    ("suffix", "headers"),
    [
        ("", {}),
        ("?token=", {}),
        ("?token=wrong", {}),
        (f"?token={TOKEN}x", {}),
        ("", {"Authorization": "Bearer wrong"}),
        ("", {"Authorization": f"Basic {TOKEN}"}),
        ("", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
    ],
)
def test_missing_or_wrong_token_is_401(
    served: tuple[DashboardServer, LoopThread],
    http_get: Get,
    suffix: str,
    headers: dict[str, str],
) -> None:
    server, lt = served
    for path in ("", "api/state", "favicon.ico"):
        status, reply_headers, body = http_get(server.url + path + suffix, headers)
        assert status == 401, path
        assert reply_headers["WWW-Authenticate"].startswith("Bearer")
        assert "admin.token" in json.loads(body)["error"]
    assert lt.calls == []  # nothing reached the node
    assert len(server.rejected) == 3  # type: ignore[attr-defined]


def test_page_with_token_has_strict_csp_and_no_remote_resources(
    served: tuple[DashboardServer, LoopThread], http_get: Get
) -> None:
    server, _ = served
    status, headers, body = http_get(f"{server.url}?token={TOKEN}")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    html = body.decode()
    csp = headers["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    # Nothing is fetched from elsewhere: no external URL other than the SVG namespace.
    for marker in ("https://", "//cdn", "<script src", '<link rel="stylesheet"'):
        assert marker not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    # A fresh nonce per response.
    _, headers2, _ = http_get(f"{server.url}?token={TOKEN}")
    assert headers2["Content-Security-Policy"] != csp


def test_unknown_path_with_token_is_404(
    served: tuple[DashboardServer, LoopThread], http_get: Get
) -> None:
    server, _ = served
    status, _, body = http_get(f"{server.url}nope?token={TOKEN}")
    assert status == 404
    assert "/nope" in json.loads(body)["error"]


def test_non_loopback_host_header_is_refused(
    served: tuple[DashboardServer, LoopThread], http_get: Get
) -> None:
    server, lt = served
    status, _, _ = http_get(
        server.url + "api/state",
        {"Authorization": f"Bearer {TOKEN}", "Host": f"evil.example:{server.port}"},
    )
    assert status == 421
    ok, _, _ = http_get(
        server.url + "api/state",
        {"Authorization": f"Bearer {TOKEN}", "Host": f"localhost:{server.port}"},
    )
    assert ok == 200
    assert len(lt.calls) == 1


def test_state_is_503_when_the_loop_is_gone(http_get: Get) -> None:
    lt = LoopThread()
    server = DashboardServer("127.0.0.1:0", TOKEN, lt.collect, lt.loop)
    server.start()
    try:
        lt.close()
        status, _, body = http_get(server.url + "api/state", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 503
        assert "unavailable" in json.loads(body)["error"]
    finally:
        asyncio.run(server.stop())


def test_busy_port_is_a_one_line_error() -> None:
    lt = LoopThread()
    first = DashboardServer("127.0.0.1:0", TOKEN, lt.collect, lt.loop)
    first.start()
    try:
        second = DashboardServer(f"127.0.0.1:{first.port}", TOKEN, lt.collect, lt.loop)
        with pytest.raises(DashboardError, match=r"cannot serve the dashboard on 127\.0\.0\.1:"):
            second.start()
    finally:
        asyncio.run_coroutine_threadsafe(first.stop(), lt.loop).result(5)
        lt.close()


def test_empty_token_is_refused() -> None:
    with pytest.raises(DashboardError, match="non-empty token"):
        DashboardServer("127.0.0.1:0", "", dict, asyncio.new_event_loop())


def test_url_with_token_is_quoted() -> None:
    assert dashboard_url("http://127.0.0.1:5/", "a b/c") == "http://127.0.0.1:5/?token=a%20b%2Fc"


def test_dashboard_setting_is_loopback_or_off(tmp_path: Any) -> None:
    assert NodeSettings().dashboard == "127.0.0.1:0"
    assert NodeSettings(dashboard="off").dashboard == "off"
    assert NodeSettings(dashboard="[::1]:8080").dashboard == "[::1]:8080"
    assert NodeSettings(dashboard="localhost:9000").dashboard == "localhost:9000"
    toml = tmp_path / "node.toml"
    toml.write_text('dashboard = "0.0.0.0:8080"\n')
    with pytest.raises(ConfigError, match=r"dashboard: .*loopback only"):
        load_settings(toml, {})
    toml.write_text('dashboard = "nonsense"\n')
    with pytest.raises(ConfigError, match=r"dashboard: .*expected host:port"):
        load_settings(toml, {})


def test_traffic_history_rates_are_bytes_per_second_between_samples() -> None:
    history = TrafficHistory(size=3)
    assert history.rates() == []
    history.samples.extend([(100.0, 0, 0), (102.0, 400, 1000), (104.0, 400, 1100)])
    assert history.rates() == [
        {"t": 102.0, "in_bps": 200.0, "out_bps": 500.0},
        {"t": 104.0, "in_bps": 0.0, "out_bps": 50.0},
    ]
    history.samples.append((106.0, 0, 1100))  # a counter reset (restart) is not negative
    assert history.rates()[-1] == {"t": 106.0, "in_bps": 0.0, "out_bps": 0.0}
    assert len(history.samples) == 3
