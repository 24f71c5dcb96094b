"""Bit rot between the source and the agent: the damaged object is never stored as a good copy, and the
rest of the shard is copied exactly. Single-part sources take the path where the source's own ETag is
sent as Content-MD5 (no hashing in the agent), so this is what proves that path checks content."""

from __future__ import annotations

import pytest

from tests.conftest import Pair
from tests.support.agentkit import failed, start_agent
from tests.support.corrupt import corrupting_relay
from tests.support.data import digests, expected, payload, put_all

MARK, ROT = b"<<intact-bytes>>", b"<<intact-bytez>>"


@pytest.mark.parametrize("processes", [1, 2], ids=["agent-process", "worker-processes"])
def test_corrupted_download_is_never_stored(pair: Pair, tmp_path: object, processes: int) -> None:
    good = {f"ok/{i:03d}": payload(f"ok{i}", 5000 + 77 * i) for i in range(40)}
    bad = {"rot/victim.bin": payload("v1", 3000) + MARK + payload("v2", 3000)}
    put_all(pair.src.client(), pair.src_bucket, good | bad)
    with corrupting_relay(pair.src.endpoint_url, MARK, ROT) as relayed:
        spec = pair.spec(
            source={"endpoint": relayed},
            retry={"attempts": 2, "initialBackoffSeconds": 0.05, "maxBackoffSeconds": 0.1},
            transfer={"workerProcesses": processes},
        )
        pair.plan(spec)
        run = start_agent(pair, tmp_path / "logs")  # type: ignore[operator]
        assert run.wait() == 3, run.stderr[-3000:]  # 3: some objects failed
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(good)  # the victim is not in the target
    [f] = failed(pair)
    assert f["key"] == "rot/victim.bin" and f["attempts"] == 2
    assert "does not match" in f["reason"], f
