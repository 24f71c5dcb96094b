"""The Driver (shared by the operator and `skymigrate run`) on real servers and real local agents."""

from __future__ import annotations

import time
from pathlib import Path

from skymigrate.core.credentials import Credentials
from skymigrate.operator.driver import Creds, Driver, Identity
from skymigrate.operator.launchers.base import LaunchRequest
from skymigrate.operator.launchers.local import LocalLauncher

from tests.conftest import Pair
from tests.support.data import digests, expected, payload, put_all


class FlakyTeardown(LocalLauncher):
    """The real local launcher whose teardown fails the first times, as a cloud API might."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.calls = 0

    def teardown(self, req: LaunchRequest) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("cloud API unavailable")
        super().teardown(req)


def run_to_end(d: Driver, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not d.done and time.monotonic() < deadline:
        before = d.phase
        d.step()
        if d.phase == before:
            time.sleep(0.3)
    assert d.done, f"still {d.phase}: {d.message}"


def test_teardown_failure_is_retried_and_the_migration_still_succeeds(pair: Pair, tmp_path: Path) -> None:
    objects = {f"t/{i}": payload(f"t{i}", 10_000 + i) for i in range(20)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    creds = Creds(
        Credentials(pair.src.access_key, pair.src.secret_key), Credentials(pair.dst.access_key, pair.dst.secret_key)
    )
    launcher = FlakyTeardown(tmp_path / "run", failures=2)
    events: list[tuple[str, str, str]] = []
    d = Driver(Identity("ns", "flaky", "uid-1"), pair.spec(), creds, launcher, on_event=lambda *e: events.append(e))
    run_to_end(d)
    assert d.phase == "Succeeded", d.message
    assert launcher.calls == 3
    assert [e[1] for e in events].count("TeardownFailed") == 2
    torn = next(c for c in d.status()["conditions"] if c["type"] == "TornDown")
    assert torn["status"] == "True"
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)


def test_local_launcher_wait_ends_when_an_agent_exits(pair: Pair, tmp_path: Path) -> None:
    """`skymigrate run` sleeps in Launcher.wait between polls: an agent's exit must end the sleep, so a run
    is not stretched to the next tick. An agent with no plan in its state store exits at once."""
    req = LaunchRequest("ns", "w", "uid-w", pair.spec(), f"file://{tmp_path / 'no-plan'}")
    launcher = LocalLauncher(tmp_path / "run")
    launcher.launch(req)
    started = time.monotonic()
    launcher.wait(req, 300)
    assert time.monotonic() - started < 150, "wait slept through the agent's exit"
    st = launcher.poll(req)
    assert st.phase == "Finished" and st.nodes[0].phase == "Failed" and st.nodes[0].exit_code != 0
