"""Launchers start node agents somewhere and report on them: local processes or a SkyPilot cluster."""

from __future__ import annotations

from skymigrate.operator.launchers.base import Launcher, LaunchRequest, LaunchStatus, NodeState


def get_launcher(kind: str) -> Launcher:
    if kind == "local":
        from skymigrate.operator.launchers.local import LocalLauncher

        return LocalLauncher()
    if kind == "skypilot":
        from skymigrate.operator.launchers.skypilot import SkyPilotLauncher

        return SkyPilotLauncher()
    raise ValueError(f"unknown launcher {kind!r}: use local or skypilot")


__all__ = ["LaunchRequest", "LaunchStatus", "Launcher", "NodeState", "get_launcher"]
