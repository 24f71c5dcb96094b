"""Re-export local agents' metrics on the operator's /metrics.

Agents started by the local launcher listen on 127.0.0.1 inside the operator's pod, where Prometheus
cannot reach them; the operator's own port it can. At each scrape this collector reads every local
agent's /metrics (its port is in the state store, metrics/<rank>.json) and serves the samples as they
are, merged per metric family. SkyPilot nodes serve their own /metrics on port 9100.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from skymigrate.operator.driver import Driver

TIMEOUT_S = 2.0


def local_agent_urls(drivers: Iterable[Driver]) -> list[str]:
    urls: list[str] = []
    for d in drivers:
        if d.launcher.name != "local" or d.done:
            continue
        for rank in range(d.spec.nodes):
            try:
                raw = d.store.get(f"metrics/{rank}.json")
            except Exception:  # noqa: S112 - a store hiccup costs one scrape of one agent, nothing more
                continue
            if raw:
                urls.append(f"http://127.0.0.1:{int(json.loads(raw)['port'])}/metrics")
    return urls


class AgentMetricsRelay(Collector):
    def __init__(self, urls: Callable[[], list[str]]) -> None:
        self.urls = urls

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for url in self.urls():
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:  # noqa: S310 - loopback agents only
                    text = r.read().decode()
            except OSError:
                continue  # the agent just exited or is starting: its series go stale, as with a direct scrape
            for fam in text_string_to_metric_families(text):
                merged = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
                merged.samples.extend(fam.samples)
        yield from families.values()
