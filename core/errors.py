"""The one error format of the environment configuration: file, key path, reason (and line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """`('dynamic_values', 'x', 'sources', 0, 'weight')` -> `dynamic_values.x.sources[0].weight`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass(frozen=True)
class ConfigProblem:
    file: Path | str
    path: KeyPath
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {format_path(self.path)}: {self.reason}"


class ConfigError(Exception):
    """Every problem found in an environment's files, reported at once."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        count = len(self.problems)
        heading = f"{count} problem{'s' if count != 1 else ''} in the environment configuration:"
        super().__init__("\n".join([heading, *(f"  - {problem}" for problem in self.problems)]))
