"""Server settings: where the built files are, and the page's configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    web_dir: Path = ROOT / "web"
    build_dir: Path = ROOT / "build"
    default_task: str = "telemetry-triage"
    tasks: tuple[str, ...] = ("telemetry-triage",)
    extra: dict = field(default_factory=dict)

    @property
    def runtime_dir(self) -> Path:
        return self.build_dir / "runtime"

    @property
    def tasks_dir(self) -> Path:
        return self.build_dir / "tasks"

    @property
    def models_dir(self) -> Path:
        return self.build_dir / "models"

    @classmethod
    def from_env(cls) -> Settings:
        build = os.environ.get("EDGE_TRIAGE_BUILD_DIR")
        return cls(build_dir=Path(build)) if build else cls()
