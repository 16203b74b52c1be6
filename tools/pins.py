"""Pin the exact versions CI passed with: constraints.txt and environment.yml, from one
run.

pyproject.toml keeps loose ranges for readers' own environments. `make` installs with
constraints.txt (`pip install -c`), so a new release of Sphinx, myst-nb or nbval cannot
break `make book` or `make test` overnight; environment.yml (conda, Binder) pins the
same
versions.

    python tools/pins.py --write   # after a green `make test`: freeze this venv into
    both files
    python tools/pins.py --check   # exit 1 if the two files disagree (tests run this)

torch is left to the Makefile's TORCH_SPEC (a local "+cpu" build would not resolve on
another machine), and dpolib itself is not pinned.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
ENVIRONMENT = ROOT / "environment.yml"
EXTRAS = ("book", "test", "widgets", "hf")
UNPINNED = {"torch", "dpolib"}
HEADER = (
    "# Exact versions `make test` last passed with (python tools/pins.py --write).\n"
    "# make installs with `pip install -c constraints.txt`; torch comes from "
    "TORCH_SPEC.\n"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return canonical(re.split(r"[<>=!~\[ ;@]", spec.strip(), maxsplit=1)[0])


def declared() -> list[str]:
    """Every distribution pyproject.toml asks for, in the dependencies and the
    extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in EXTRAS:
        specs += project.get("optional-dependencies", {}).get(extra, [])
    names = [requirement_name(s) for s in specs]
    return sorted({n for n in names if n not in UNPINNED and n != "dpolib"})


def read_constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def environment_pins() -> dict[str, str]:
    """name -> pinned version of environment.yml's pip list ('' when not pinned with
    ==)."""
    pins = {}
    for line in ENVIRONMENT.read_text().splitlines():
        m = re.match(r"^\s+- ([A-Za-z0-9][A-Za-z0-9_.\-\[\]]*)\s*(==\s*(\S+))?", line)
        if m and not line.strip().startswith("- --"):
            pins[requirement_name(m.group(1))] = m.group(3) or ""
    return pins


def write() -> None:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    pins = {}
    for line in frozen:
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            if canonical(name) not in UNPINNED and not canonical(name).startswith(
                "nvidia-"
            ):
                pins[canonical(name)] = version.strip()
    missing = [n for n in declared() if n not in pins]
    if missing:
        sys.exit(f"not installed in this environment, cannot pin: {missing}")
    CONSTRAINTS.write_text(
        HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    )
    lines = ENVIRONMENT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    kept = [
        line
        for line in lines[start + 1 :]
        if line.strip().startswith("- --") or line.strip().startswith("- torch")
    ]
    pip_lines = kept + [f"      - {n}=={pins[n]}" for n in declared()]
    ENVIRONMENT.write_text("\n".join(lines[: start + 1] + pip_lines) + "\n")
    print(f"wrote {CONSTRAINTS.name} ({len(pins)} pins) and {ENVIRONMENT.name}")


def problems() -> list[str]:
    pins, env = read_constraints(), environment_pins()
    out = [
        f"{n}: declared in pyproject.toml, not in constraints.txt"
        for n in declared()
        if n not in pins
    ]
    for name in declared():
        if name not in env:
            out.append(f"{name}: declared in pyproject.toml, not in environment.yml")
        elif name in pins and env[name] != pins[name]:
            out.append(
                f"{name}: environment.yml pins {env[name] or 'no version'}, "
                f"constraints.txt {pins[name]}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    if args.write:
        write()
        return 0
    found = problems()
    for p in found:
        print(p)
    if found:
        print(
            "run `python tools/pins.py --write` in the environment that passed make "
            "test"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
