"""skymigrate: run migrations standalone, try the demo, or run the Kubernetes operator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skymigrate.operator.standalone import ManifestError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skymigrate",
        description="Move whole object-storage buckets between S3-compatible endpoints: fast, verified, with an ETA.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="run a Migration manifest without Kubernetes (live progress, then final statistics)",
        description="Run the operator's reconcile logic on this machine: preflight, plan, launch the "
        "node agents, show live per-node and cluster progress/speed/ETA, verify, report. "
        "Running the same manifest again resumes (finished objects are skipped).",
    )
    r.add_argument("manifest", type=Path, help="a YAML file holding one Migration")
    r.add_argument("--launcher", choices=["local", "skypilot"], help="override spec.launcher.type")
    r.add_argument("--no-tty", action="store_true", help="plain progress lines instead of the live view")
    r.add_argument("--events", type=Path, help="append one JSON object per status tick to this file (for tooling)")
    r.add_argument("--tick", type=float, default=1.0, help="seconds between status refreshes (default 1)")

    d = sub.add_parser(
        "demo",
        help="start two local S3 servers, fill one, and migrate it to the other",
        description="Needs the demo extra (moto): pip install 'skymigrate[demo]'.",
    )
    d.add_argument(
        "--scale", type=float, default=2.0, help="data volume multiplier (default 2: ~370 MB, 2,500 objects)"
    )
    d.add_argument("--nodes", type=int, default=2, help="node agents to run (default 2)")
    d.add_argument("--no-tty", action="store_true", help="plain progress lines instead of the live view")
    d.add_argument("--events", type=Path, help="append one JSON object per status tick to this file")

    o = sub.add_parser("operator", help="run the Kubernetes operator (kopf) that reconciles Migration resources")
    o.add_argument("--namespace", "-n", action="append", default=[], help="namespace to watch (repeatable)")
    o.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    o.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    o.add_argument("--metrics-port", type=int, default=9090, help="port for /metrics (-1 disables)")
    o.add_argument("--metrics-addr", default="0.0.0.0", help="address for /metrics")  # noqa: S104
    o.add_argument(
        "--relay-agent-metrics",
        action="store_true",
        help="also serve local agents' metrics on /metrics (agents listen on 127.0.0.1 only)",
    )
    o.add_argument("--peering", default=None, help="kopf peering name (default: standalone, no peering)")
    o.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            from skymigrate.operator import standalone

            events = args.events.open("a", encoding="utf-8") if args.events else None
            try:
                return standalone.run(
                    args.manifest,
                    launcher=args.launcher,
                    tty=False if args.no_tty else None,
                    events=events,
                    tick=args.tick,
                )
            finally:
                if events:
                    events.close()
        if args.command == "demo":
            try:
                import moto  # noqa: F401
            except ImportError:
                print("skymigrate demo needs moto: pip install 'skymigrate[demo]'", file=sys.stderr)
                return 2
            from skymigrate.operator import demo

            events = args.events.open("a", encoding="utf-8") if args.events else None
            try:
                return demo.run(scale=args.scale, nodes=args.nodes, tty=False if args.no_tty else None, events=events)
            finally:
                if events:
                    events.close()
        if args.command == "operator":
            from skymigrate.operator import kopf_main

            return int(kopf_main.run(
                namespaces=args.namespace, all_namespaces=args.all_namespaces, liveness=args.liveness,
                metrics_port=args.metrics_port, metrics_addr=args.metrics_addr, peering=args.peering,
                verbose=args.verbose, relay_agent_metrics=args.relay_agent_metrics,
            ))  # fmt: skip
    except ManifestError as e:
        print(f"skymigrate: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
