"""skymigrate-agent: copy this node's shard. Started by a launcher; runnable by hand for debugging."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TypeVar

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from skymigrate.agent.runner import Agent, AgentError
from skymigrate.core import logs
from skymigrate.core.credentials import Credentials, CredentialsError
from skymigrate.core.metrics import AgentMetrics
from skymigrate.core.plan import CONFIG, PLAN, Plan, RunConfig, progress_path
from skymigrate.core.preflight import PreflightError
from skymigrate.core.statestore import StateStore, StateStoreError, open_store

log = logging.getLogger("skymigrate.agent")

T = TypeVar("T")

EXIT_OK, EXIT_BAD_INPUT, EXIT_FAILED_OBJECTS = 0, 2, 3


def _env_int(*names: str) -> int | None:
    for n in names:
        if os.environ.get(n, "").strip():
            return int(os.environ[n])
    return None


def _env_float(name: str) -> float | None:
    v = os.environ.get(name, "").strip()
    return float(v) if v else None


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skymigrate-agent",
        description="Copy one shard of a planned migration from source to target through s5cmd, verifying "
        "every object and reporting progress to the state store. Credentials come only from the "
        "environment: SKYMIGRATE_{SOURCE,TARGET,STATE}_{ACCESS_KEY_ID,SECRET_ACCESS_KEY,SESSION_TOKEN} "
        "or SKYMIGRATE_{SIDE}_PROFILE.",
        epilog="Exit codes: 0 all objects verified; 2 bad input (nothing copied); 3 some objects failed "
        "(listed in failed/<rank>.jsonl in the state store).",
    )
    p.add_argument(
        "--state", required=True, help="state store root of this migration (file:///path or s3://bucket/prefix)"
    )
    p.add_argument(
        "--state-endpoint", default=os.environ.get("SKYMIGRATE_STATE_ENDPOINT"), help="S3 endpoint of the state store"
    )
    p.add_argument("--state-region", default=os.environ.get("SKYMIGRATE_STATE_REGION"))
    p.add_argument(
        "--rank",
        type=int,
        default=_env_int("SKYMIGRATE_RANK", "SKYPILOT_NODE_RANK"),
        help="this node's shard (default: $SKYMIGRATE_RANK or $SKYPILOT_NODE_RANK)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=_env_int("SKYMIGRATE_NODES", "SKYPILOT_NUM_NODES"),
        help="node count; must match the plan (default: $SKYMIGRATE_NODES or $SKYPILOT_NUM_NODES)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=_or(_env_int("SKYMIGRATE_METRICS_PORT"), 9100),
        help="Prometheus /metrics port (0 picks a free one, written to metrics/<rank>.json; -1 disables)",
    )
    p.add_argument(
        "--metrics-linger",
        type=float,
        default=_or(_env_float("SKYMIGRATE_METRICS_LINGER"), 0.0),
        help="keep serving /metrics this many seconds after the shard is done (or until SIGTERM), "
        "so the last Prometheus scrape sees the final counts",
    )
    p.add_argument("--metrics-addr", default=os.environ.get("SKYMIGRATE_METRICS_ADDR", "0.0.0.0"))  # noqa: S104
    p.add_argument("--uid-tag", default="", help=argparse.SUPPRESS)  # lets a launcher recognise its processes
    p.add_argument(
        "--small-objects",
        choices=("direct", "s5cmd"),
        default=os.environ.get("SKYMIGRATE_SMALL_OBJECTS") or None,
        help="override spec.transfer.smallObjectMethod: 'direct' (one GET and one PUT each, in-process) "
        "or 's5cmd' (batches through `s5cmd run` over the RAM-disk staging area)",
    )
    p.add_argument("--debug", action="store_true", help="detailed per-object diagnostics (also spec.debug)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        src, tgt = Credentials.from_env("source"), Credentials.from_env("target")
        state_creds = Credentials.from_env("state") if args.state.startswith("s3://") else None
    except CredentialsError as e:
        logs.setup()
        log.error("skymigrate-agent: %s", e)
        return EXIT_BAD_INPUT
    secrets = [*src.secret_values(), *tgt.secret_values(), *(state_creds.secret_values() if state_creds else [])]
    logs.setup(secrets=secrets)
    if args.rank is None or args.nodes is None:
        log.error("skymigrate-agent: --rank and --nodes are required (or $SKYPILOT_NODE_RANK/$SKYPILOT_NUM_NODES)")
        return EXIT_BAD_INPUT
    store: StateStore | None = None
    try:
        store = open_store(args.state, args.state_endpoint, state_creds, args.state_region)
        raw = store.get(CONFIG)
        plan_raw = store.get(PLAN)
        if raw is None or plan_raw is None:
            raise AgentError(f"{args.state} holds no planned migration ({CONFIG}/{PLAN} missing)")
        cfg = RunConfig.model_validate_json(raw)
        plan = Plan.model_validate_json(plan_raw)
        if len(plan.shards) != args.nodes or not 0 <= args.rank < args.nodes:
            raise AgentError(f"rank {args.rank} of {args.nodes} nodes does not fit a plan of {len(plan.shards)} shards")
        if args.debug:
            cfg = cfg.model_copy(update={"spec": cfg.spec.model_copy(update={"debug": True})})
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the payload
        registry = CollectorRegistry()
        metrics = AgentMetrics(registry, cfg.namespace, cfg.name, args.rank)
        serving = False
        if args.metrics_port >= 0:
            try:
                server, _ = start_http_server(args.metrics_port, addr=args.metrics_addr, registry=registry)
            except OSError as e:
                raise AgentError(
                    f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {e.strerror}"
                ) from e
            port = server.server_address[1]
            serving = True
            log.info("metrics on http://%s:%d/metrics", args.metrics_addr, port)
            store.put(f"metrics/{args.rank}.json", f'{{"port": {port}, "pid": {os.getpid()}}}'.encode())
        agent = Agent(
            cfg,
            store,
            args.rank,
            args.nodes,
            src,
            tgt,
            metrics,
            args.small_objects or cfg.spec.transfer.small_object_method,
        )
        code = agent.run()
        if serving and args.metrics_linger > 0:
            _linger(args.metrics_linger)
        return code
    except (AgentError, PreflightError, StateStoreError, CredentialsError) as e:
        log.error("skymigrate-agent: %s", e)
        _report_failure(store, args.rank, str(e))
        return EXIT_BAD_INPUT


def _linger(seconds: float) -> None:
    """Keep the /metrics server (a daemon thread) up for a while; SIGTERM ends the wait early."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    log.info("serving final metrics for up to %.0fs (SIGTERM ends this)", seconds)
    done.wait(seconds)


def _report_failure(store: StateStore | None, rank: int | None, message: str) -> None:
    """Tell the operator why this node stopped, if the store can be written at all."""
    if store is None or rank is None:
        return
    import time

    from skymigrate.core.progress import NodeHeartbeat

    hb = NodeHeartbeat(rank=rank, phase="Failed", started_at=time.time(), updated_at=time.time(), last_error=message)
    # The store itself may be what failed; the log line already says why.
    with contextlib.suppress(Exception):
        store.put(progress_path(rank), hb.model_dump_json().encode())


if __name__ == "__main__":
    sys.exit(main())
