"""`skymigrate run` / `demo` / `--help` as a user runs them: real processes, real servers, real agents."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import Pair
from tests.support.data import digests, expected, payload, put_all


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skymigrate.operator.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip


@pytest.mark.parametrize("args", [[], ["run"], ["demo"], ["operator"]])
def test_every_command_has_help(args: list[str]) -> None:
    r = cli(*args, "--help")
    assert r.returncode == 0 and "usage: skymigrate" in r.stdout
    agent = subprocess.run(
        [sys.executable, "-m", "skymigrate.agent.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert agent.returncode == 0 and "Exit codes" in agent.stdout


def manifest(pair: Pair, path: Path, **spec: object) -> Path:
    doc = {"apiVersion": "skymigrate.io/v1alpha1", "kind": "Migration", "metadata": {"name": "cli-test"},
           "spec": {**pair.spec().wire(), **spec}}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def env_for(pair: Pair) -> dict[str, str]:
    env = pair.env()
    env.update(SRC_AK=pair.src.access_key, SRC_SK=pair.src.secret_key, DST_AK=pair.dst.access_key,
               DST_SK=pair.dst.secret_key, SKYMIGRATE_RUN_DIR=str(pair.state_dir.parent / "run"))  # fmt: skip
    return env


def test_run_copies_reports_and_resumes(pair: Pair, tmp_path: Path) -> None:
    objects = {f"k/{i:03d}": payload(f"c{i}", 20_000 + i * 333) for i in range(120)}
    objects["big"] = payload("big", 9 * 2**20)
    put_all(pair.src.client(), pair.src_bucket, objects)
    path = manifest(pair, tmp_path / "m.yaml", nodes=2)
    events = tmp_path / "events.jsonl"
    r = cli("run", str(path), "--no-tty", "--events", str(events), env=env_for(pair))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)
    assert "📊 Final Migration Statistics:" in r.stdout and f"Source bucket: {len(objects)} objects" in r.stdout
    assert f"Target bucket: {len(objects)} objects" in r.stdout
    ticks = [json.loads(line) for line in events.read_text().splitlines()]
    assert ticks[-1]["phase"] == "Succeeded" and ticks[-1]["bytes_done"] == sum(map(len, objects.values()))
    assert [t["phase"] for t in ticks if t["phase"] == "Running"], "no Running ticks"
    # Running it again resumes: everything is already verified, nothing is copied again.
    r2 = cli("run", str(path), "--no-tty", env=env_for(pair))
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "cli-test: Succeeded" in r2.stdout
    journaled = [json.loads(line)["k"] for seg in sorted(pair.state_dir.rglob("journal/*/*.jsonl.gz"))
                 for line in gzip.decompress(seg.read_bytes()).decode().splitlines()]  # fmt: skip
    assert sorted(journaled) == sorted(objects), "each object copied and journaled exactly once"
    assert digests(pair.dst.client(), pair.dst_bucket) == expected(objects)


def test_run_rejects_bad_manifest_readably(pair: Pair, tmp_path: Path) -> None:
    path = manifest(pair, tmp_path / "bad.yaml", nodes=0)
    r = cli("run", str(path), env=env_for(pair))
    assert r.returncode == 2
    assert "spec.nodes" in r.stderr and "Traceback" not in r.stderr


def test_run_missing_credentials_env_is_a_clear_error(pair: Pair, tmp_path: Path) -> None:
    path = manifest(pair, tmp_path / "m.yaml")
    env = env_for(pair)
    del env["SRC_SK"]
    r = cli("run", str(path), env=env)
    assert r.returncode == 2 and "SRC_SK" in r.stderr and "Traceback" not in r.stderr


def test_run_wrong_credentials_fails_without_leaking(pair: Pair, tmp_path: Path) -> None:
    path = manifest(pair, tmp_path / "m.yaml")
    env = env_for(pair)
    env["DST_SK"] = "wrong-secret-value-1234"
    r = cli("run", str(path), "--no-tty", env=env)
    assert r.returncode == 1
    assert "CredentialsRejected" in r.stdout + r.stderr or "rejected the credentials" in r.stdout + r.stderr
    assert "wrong-secret-value-1234" not in r.stdout + r.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, SKYMIGRATE_RUN_DIR=str(tmp_path / "run"))
    r = cli("demo", "--scale", "0.05", "--no-tty", env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "demo: Succeeded" in r.stdout and "Final Migration Statistics" in r.stdout
