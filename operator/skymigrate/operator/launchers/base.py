"""The launcher interface: launch, poll, tear down. Implementations keep no state the operator needs
to survive a restart beyond what ``poll`` can rediscover (processes by pid file, clusters by name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from skymigrate.core.spec import MigrationSpec

LaunchPhase = Literal["Launching", "Running", "Finished", "Failed", "Gone"]
NodeLaunchPhase = Literal["Pending", "Launching", "Running", "Succeeded", "Failed", "Lost"]


@dataclass(frozen=True)
class LaunchRequest:
    namespace: str
    name: str
    uid: str
    spec: MigrationSpec
    state_url: str  # root of this migration in the state store
    # Credentials as env vars (SKYMIGRATE_{SOURCE,TARGET,STATE}_*): secrets, passed only as env/secrets.
    secret_env: dict[str, str] = field(repr=False, default_factory=dict)
    agent_version: str = "0.1.0"

    @property
    def cluster_name(self) -> str:
        """Stable per migration object (uid), short enough for every cloud's naming rules."""
        return f"skymig-{self.name[:30]}-{self.uid[:8]}".lower().replace("_", "-").replace(".", "-")


@dataclass
class NodeState:
    rank: int
    phase: NodeLaunchPhase
    message: str = ""
    exit_code: int | None = None


@dataclass
class LaunchStatus:
    phase: LaunchPhase
    nodes: list[NodeState] = field(default_factory=list)
    message: str = ""
    reason: str = ""  # CamelCase condition reason when Failed (e.g. ProvisioningFailed)


class Launcher(Protocol):
    name: str

    def launch(self, req: LaunchRequest) -> None:
        """Start (or re-attach to) the agents. May block for minutes: callers run it off the event loop."""

    def poll(self, req: LaunchRequest) -> LaunchStatus:
        """Where the agents are now. Cheap enough to call every few seconds."""

    def relaunch(self, req: LaunchRequest, ranks: list[int]) -> None:
        """Start lost nodes again; they resume from their journals."""

    def teardown(self, req: LaunchRequest) -> None:
        """Stop every agent and release every machine. Idempotent."""

    def wait(self, req: LaunchRequest, timeout: float) -> None:
        """Sleep up to ``timeout`` s; return sooner when an agent may have ended (worth polling again)."""
