"""What `skymigrate run` shows: a live terminal view (rich) or plain progress lines, then the seed's
final statistics. Both read only the status dict, like `kubectl get migrations` does."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from skymigrate.core import humanize


def _bar(pct: float) -> ProgressBar:
    return ProgressBar(total=100.0, completed=min(max(pct, 0.0), 100.0), width=30)


def local_time(rfc3339: str | None, now: float | None = None) -> str:
    """The status's RFC 3339 (UTC) time as a person here reads it: 14:05:09, with the date if not today."""
    if not rfc3339:
        return "-"
    at = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone()
    today = datetime.fromtimestamp(time.time() if now is None else now).astimezone().date()
    return at.strftime("%H:%M:%S" if at.date() == today else "%Y-%m-%d %H:%M:%S")


def _moved(st: dict[str, Any]) -> int:
    """Bytes behind the bar's percent: verified plus in flight."""
    b = st.get("bytes", {})
    return int(b.get("done", 0)) + int(b.get("inFlight", 0))


def render(st: dict[str, Any], name: str) -> Group:
    t = Table(box=None, expand=False, pad_edge=False)
    for col in ("node", "phase", "progress", "%", "objects", "speed", "ETA", "RAM disk"):
        t.add_column(col, justify="right" if col not in ("node", "phase", "progress") else "left")
    for n in st.get("nodes", []):
        pct = float(n.get("percent", 0.0))
        t.add_row(
            str(n["rank"]), n.get("phase", ""), _bar(pct), f"{pct:.1f}%",
            f"{n.get('objectsDone', 0)}/{n.get('objectsTotal', '?')}", n.get("speed", "-"), n.get("eta", "-"),
            f"{n.get('ramDiskUsedPercent', 0):.0f}%",
        )  # fmt: skip
    pct = float(st.get("progress", {}).get("percent", 0.0))
    head = Text.assemble(
        (f"{name} ", "bold"), (st.get("phase", ""), "cyan"), f"  elapsed {st.get('elapsed', {}).get('text', '-')}"
    )
    cluster = Table.grid(padding=(0, 2))
    cluster.add_row(
        "cluster", _bar(pct), f"{pct:.1f}%",
        f"{st.get('objectsText', '-')} objects", humanize.size(_moved(st)) + " / "
        + humanize.size(st.get("bytes", {}).get("total", 0)),
        f"speed {st.get('speedText', '-')}", f"ETA {st.get('eta', {}).get('text', '-')}",
        f"done at {local_time(st.get('eta', {}).get('completionTime'))}",
    )  # fmt: skip
    msg = Text(st.get("message", ""), style="dim")
    return Group(head, cluster, t, msg)


class View:
    """Live view on a terminal; one line per tick elsewhere. Optional JSON-lines events for tooling."""

    def __init__(
        self, name: str, *, tty: bool | None = None, events: IO[str] | None = None, every: float = 5.0
    ) -> None:
        self.name, self.events, self.every = name, events, every
        self.console = Console(stderr=False)
        self.tty = self.console.is_terminal if tty is None else tty
        self._live: Live | None = None
        self._last_line = 0.0
        self._last_phase = ""

    def __enter__(self) -> View:
        if self.tty:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.__exit__(None, None, None)

    def event(self, kind: str, reason: str, message: str) -> None:
        line = f"{'⚠️ ' if kind == 'Warning' else ''}[{reason}] {message}"
        if self._live:
            self._live.console.print(line)
        else:
            print(line, flush=True)

    def update(self, st: dict[str, Any]) -> None:
        now = time.time()
        if self.events:
            self.events.write(json.dumps({
                "t": now, "phase": st.get("phase"), "elapsed": st.get("elapsed", {}).get("seconds"),
                "bytes_done": st.get("bytes", {}).get("done", 0), "bytes_total": st.get("bytes", {}).get("total", 0),
                "bytes_in_flight": st.get("bytes", {}).get("inFlight", 0),
                "objects_done": st.get("objects", {}).get("done", 0), "objects_total": st.get("objects", {}).get("total", 0),
                "speed_bps": st.get("speed", {}).get("bytesPerSecond", 0), "eta_s": st.get("eta", {}).get("seconds"),
                "nodes": [{k: n.get(k) for k in ("rank", "phase", "bytesDone", "bytesTotal", "etaSeconds")}
                          for n in st.get("nodes", [])],
            }) + "\n")  # fmt: skip
            self.events.flush()
        if self._live:
            self._live.update(render(st, self.name))
            return
        phase = st.get("phase", "")
        if phase != self._last_phase or now - self._last_line >= self.every:
            self._last_line, self._last_phase = now, phase
            print(
                f"🌐 {self.name} {phase}: {st.get('objectsText', '-')} objects ({st.get('progressText', '-')}), "
                f"speed {st.get('speedText', '-')}, ETA {st.get('eta', {}).get('text', '-')}, "
                f"elapsed {st.get('elapsed', {}).get('text', '-')}",
                flush=True,
            )


def final_statistics(report: dict[str, Any], out: IO[str] = sys.stdout) -> None:
    """The seed's closing block."""
    bar = "=" * 54
    lines = [
        bar, "📊 Final Migration Statistics:", bar,
        f"⏱️  Total migration time: {report['totalTimeText']}",
        f"📦 Source bucket: {report['source']['objects']} objects",
        f"📦 Target bucket: {report['target']['objects']} objects",
        f"💾 Total data transferred: {humanize.size(report['bytesTransferred'])}",
        f"🚀 Average speed: {report['averageSpeedGBPerHour']:.1f} GB/h",
    ]  # fmt: skip
    if report["failedObjects"]:
        lines.append(f"❌ Failed objects: {report['failedObjects']}")
        lines += [f"   {f['key']}: {f['stage']}: {f['reason']}" for f in report["failed"][:20]]
    out.write("\n".join([*lines, bar]) + "\n")
