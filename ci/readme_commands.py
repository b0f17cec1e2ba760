"""Print one of the two commands of the README's first code block: `demo` (first) or `test` (second)."""

import pathlib
import sys


def readme_commands(readme: pathlib.Path) -> list[str]:
    """The command lines of the first fenced code block in `readme`."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return [line.strip() for line in lines[start + 1 : end] if line.strip() and not line.strip().startswith("#")]


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "test"
    commands = readme_commands(pathlib.Path(__file__).resolve().parent.parent / "README.md")
    if len(commands) != 2:
        sys.exit(f"README's first code block must hold exactly two commands, found {len(commands)}")
    print(commands[0] if which == "demo" else commands[1])
