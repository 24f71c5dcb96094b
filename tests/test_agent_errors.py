"""Bad input: a clear one-line error, exit 2, nothing copied; a vanished source object: recorded as failed
with its reason, exit 3, the rest copied. Secret values never appear in output or state."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Pair
from tests.support.agentkit import MiB, assert_no_secrets, failed, heartbeat, state_texts
from tests.support.data import digests, expected, payload, put_all
from tests.support.procs import free_port

WRONG_SECRET = "wR0ngS3cretValue/ThatMustNeverLeak+xyz"


def _rewrite_config(pair: Pair, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit the planned spec as if the migration had been planned with it (the agent re-reads it)."""
    path = pair.state_dir / "config.json"
    cfg = json.loads(path.read_text())
    change(cfg["spec"])
    path.write_text(json.dumps(cfg))


def _read_only(pair: Pair) -> None:
    for p in [pair.state_dir, *pair.state_dir.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _env_without(pair: Pair, side: str) -> dict[str, str]:
    return {k: v for k, v in pair.env().items() if not k.startswith(f"SKYMIGRATE_{side}_")}


def _run(
    pair: Pair, env: dict[str, str] | None = None, as_unprivileged: bool = False
) -> subprocess.CompletedProcess[str]:
    if not as_unprivileged or os.geteuid() != 0:
        return pair.agent(env=env)
    # root ignores file modes; without CAP_DAC_OVERRIDE it honours them like anyone else.
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: cannot make a directory read-only for the agent")

    caps = (
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps",
        "-dac_override,-dac_read_search",
        "--",
    )
    return pair.agent(env=env, timeout=120, prefix=(setpriv, *caps))


CASES: dict[str, tuple[str, str]] = {
    # case: (two parts of what the one error line must say)
    "target unreachable": ("target: cannot reach http://127.0.0.1:", ""),  # the source checks out: still nothing
    "source wrong secret": ("source: http://127.0.0.1:", "rejected the credentials"),
    "target wrong secret": ("target: http://127.0.0.1:", "rejected the credentials"),
    "source bucket missing": ("source: bucket 'no-such-bucket-src' does not exist", ""),
    "target bucket missing": ("target: bucket 'no-such-bucket-dst' does not exist", ""),
    "source credentials unset": ("no source credentials: set SKYMIGRATE_SOURCE_ACCESS_KEY_ID", ""),
    "target credentials unset": ("no target credentials: set SKYMIGRATE_TARGET_ACCESS_KEY_ID", ""),
    "state store read-only": ("cannot write state store file://", "Permission denied"),
    "RAM disk path missing": ("RAM disk path /nonexistent/ramdisk does not exist", ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_fast_with_one_clear_line(pair: Pair, case: str) -> None:
    objects = {f"k{i}": payload(f"k{i}", 1000 + i) for i in range(5)}
    put_all(pair.src.client(), pair.src_bucket, objects)
    pair.plan(pair.spec())
    env: dict[str, str] | None = None
    closed = f"http://127.0.0.1:{free_port()}"
    if case == "target unreachable":
        _rewrite_config(pair, lambda s: s["target"].update(endpoint=closed))
    elif case == "source wrong secret":
        env = pair.env(src_secret=WRONG_SECRET)
    elif case == "target wrong secret":
        env = pair.env(dst_secret=WRONG_SECRET)
    elif case == "source bucket missing":
        _rewrite_config(pair, lambda s: s["source"].update(bucket="no-such-bucket-src"))
    elif case == "target bucket missing":
        _rewrite_config(pair, lambda s: s["target"].update(bucket="no-such-bucket-dst"))
    elif case == "source credentials unset":
        env = _env_without(pair, "SOURCE")
    elif case == "target credentials unset":
        env = _env_without(pair, "TARGET")
    elif case == "RAM disk path missing":
        _rewrite_config(pair, lambda s: s["ram_disk"].update(path="/nonexistent/ramdisk"))
    if case == "state store read-only":
        _read_only(pair)
    before = {str(p.relative_to(pair.state_dir)) for p in pair.state_dir.rglob("*")}

    r = _run(pair, env, as_unprivileged=case == "state store read-only")
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr  # one line, no traceback
    must, also = CASES[case]
    assert must in lines[0] and also in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    # Nothing half-done: nothing in the target, nothing journaled.
    assert pair.dst.client().list_objects_v2(Bucket=pair.dst_bucket).get("KeyCount", 0) == 0
    assert not (pair.state_dir / "journal").exists()
    if case != "state store read-only":
        added = {str(p.relative_to(pair.state_dir)) for p in pair.state_dir.rglob("*")} - before
        assert added <= {"progress", "progress/0.json"}, added
        if "progress/0.json" in added:  # the operator learns why this node stopped
            hb = heartbeat(pair)
            assert hb["phase"] == "Failed" and hb["last_error"] and must in hb["last_error"]
    secrets = [pair.src.secret_key, pair.dst.secret_key, WRONG_SECRET]
    assert_no_secrets(secrets, r.stdout, r.stderr, *state_texts(pair))


def test_vanished_source_objects_are_recorded_and_the_rest_is_copied(pair: Pair) -> None:
    src = pair.src.client()
    objects = {f"v/{i:02d}": payload(f"v{i}", 3000 + i) for i in range(20)}
    objects["v/big.bin"] = payload("vb", 2 * MiB)
    objects["v/big-gone.bin"] = payload("vbg", 2 * MiB)
    objects["v/marker-gone/"] = payload("mg", 10)
    put_all(src, pair.src_bucket, objects)
    pair.plan(pair.spec(transfer={"smallObjectThreshold": MiB, "batchMaxObjects": 4}))
    gone = ["v/03", "v/17", "v/big-gone.bin", "v/marker-gone/"]
    for k in gone:
        src.delete_object(Bucket=pair.src_bucket, Key=k)

    r = pair.agent()
    assert r.returncode == 3, r.stderr[-3000:]
    rec = {f["key"]: f for f in failed(pair)}
    assert set(rec) == set(gone)
    for f in rec.values():
        assert f["reason"] == "source object no longer exists" and f["stage"] == "download"
        assert f["attempts"] == 1  # permanent: not retried
    left = {k: v for k, v in objects.items() if k not in gone}
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(left)
    hb = heartbeat(pair)
    assert hb["phase"] == "Failed" and hb["objects_failed"] == len(gone) and hb["objects_done"] == len(left)
    assert "source object no longer exists" in r.stderr
    assert_no_secrets([pair.src.secret_key, pair.dst.secret_key], r.stdout, r.stderr, *state_texts(pair))
