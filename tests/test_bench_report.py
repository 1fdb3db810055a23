"""The benchmark report judges the write path's targets from the figures of one run."""

from __future__ import annotations

from bench.report import write_path_checks
from bench.results import Measurement, ScenarioResult


def _publish(server: str, case: str, backend: str | None, cpu: float, rate: float) -> Measurement:
    return Measurement(
        "publish", case, server, backend, {"cpu_us_per_message": cpu, "stored_per_s": rate}
    )


def _results(rest_cpu: float, pg_ws_cpu: float, window_64_rate: float) -> dict[str, ScenarioResult]:
    publish = ScenarioResult("publish", "Publish")
    for case, tutorial_cpu in (
        ("WebSocket, 1 item", 100.0),
        ("WebSocket, 100 items", 100.0),
        ("REST, 1 item", 400.0),
        ("REST, 100 items", 400.0),
    ):
        publish.add(_publish("tutorial", case, None, tutorial_cpu, 10_000))
        ours = rest_cpu if case.startswith("REST") else 150.0
        publish.add(_publish("ours", case, "sqlite-memory", ours, 8_000))
        pg = pg_ws_cpu if case.startswith("WebSocket") else ours
        publish.add(_publish("ours", case, "postgres-redis", pg, 5_000))
    for window, rate in ((32, 5_000.0), (64, window_64_rate), (256, 9_000.0)):
        case = f"WebSocket, 1 item, one socket, {window} in flight"
        publish.add(_publish("ours", case, "sqlite-memory", 100.0, rate))
    fanout = ScenarioResult("fanout", "Fan-out")
    paced = {"subscribers": 100, "mode": "paced", "rate": 100.0}
    for server, cpu, p99 in (("ours", 30.0, 12.0), ("raw", 25.0, 10.0)):
        fanout.add(
            Measurement(
                "fanout",
                "100 subs",
                server,
                None,
                {"cpu_us_per_delivery": cpu, "p99_ms": p99},
                paced,
            )
        )
    return {"publish": publish, "fanout": fanout}


def _verdicts(results: dict[str, ScenarioResult]) -> dict[str, bool | None]:
    return {check.target: check.met for check in write_path_checks(results)}


def test_every_target_met_when_the_figures_are_within_their_limits() -> None:
    verdicts = _verdicts(_results(rest_cpu=560.0, pg_ws_cpu=200.0, window_64_rate=6_000))
    assert len(verdicts) == 12
    assert all(verdicts.values()), verdicts


def test_each_target_fails_on_its_own_figure() -> None:
    verdicts = _verdicts(_results(rest_cpu=640.0, pg_ws_cpu=240.0, window_64_rate=97))
    assert not verdicts["REST, 1 item, SQLite: CPU per message ≤ 1.5× the tutorial's"]
    assert not verdicts["WebSocket, 1 item, PostgreSQL + Redis: ≤ 1.5× SQLite's ratio"]
    assert not verdicts["no cliff: 64 and 256 in flight on one socket ≥ 32's rate"]
    assert verdicts["WebSocket, 1 item, SQLite: CPU per message ≤ 2× the tutorial's"]
    assert verdicts["REST, 1 item, PostgreSQL + Redis: ≤ 1.5× SQLite's ratio"]


def test_a_case_the_run_left_out_is_not_measured_rather_than_failed() -> None:
    verdicts = _verdicts({})
    assert set(verdicts.values()) == {None}
