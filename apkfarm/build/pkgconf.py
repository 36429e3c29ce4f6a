"""Read pkg-config ``.pc`` files the way pkgconf does, for the ``pc:`` scanners.

cbuild asks the ``pkg-config`` program inside its sandbox for a ``.pc`` file's
version and ``Requires``; apkfarm scans staged packages outside the sandbox,
so it parses the (untrusted) files itself:

* ``name=value`` lines define variables, ``Key: value`` lines define fields
  (whichever of ``=`` and ``:`` comes first decides);
* ``${name}`` expands a variable defined earlier (undefined ones expand to
  nothing, as in pkgconf), ``$$`` is a literal ``$``; ``pcfiledir`` is
  predefined as the directory holding the file;
* ``#`` starts a comment, a trailing backslash continues a line;
* ``Requires`` lists are separated by commas and/or blanks, each item a
  name optionally followed by an operator and a version, with or without
  blanks around the operator (``glib-2.0 >= 2.50, zlib``).

Expanded values are capped (``MAX_VALUE``) so doubling variables cannot
blow up memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from apkfarm.build.errors import BuildError

MAX_VALUE = 64 * 1024
OPERATORS = ("<=", ">=", "!=", "=", "<", ">")
_VAR = re.compile(r"\$\$|\$\{([^}]*)\}")


class PcFileError(BuildError):
    """A ``.pc`` file cannot be read as pkg-config data."""


@dataclass(frozen=True)
class Requirement:
    """One ``Requires`` item: ``name``, and ``op``/``version`` when constrained."""

    name: str
    op: str = ""
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.version}"


@dataclass
class PcFile:
    variables: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.fields.get("Version", "").strip()

    def requires(self, *, private: bool = True) -> list[Requirement]:
        """``Requires`` (and ``Requires.private`` unless ``private`` is false), in order."""
        items = parse_requires(self.fields.get("Requires", ""))
        if private:
            items += parse_requires(self.fields.get("Requires.private", ""))
        return items


def parse(text: str, *, pcfiledir: str, where: str) -> PcFile:
    """Parse ``.pc`` text; ``where`` names the file in errors."""
    pc = PcFile(variables={"pcfiledir": pcfiledir})
    for number, raw in _logical_lines(text):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        eq, colon = line.find("="), line.find(":")
        if colon > 0 and (eq < 0 or colon < eq):
            key, value = line[:colon].strip(), line[colon + 1 :]
            pc.fields[key] = _expand(value.strip(), pc.variables, where, number)
        elif eq > 0:
            key, value = line[:eq].strip(), line[eq + 1 :]
            if not re.fullmatch(r"[A-Za-z0-9_.]+", key):
                raise PcFileError(f"{where}:{number}: invalid variable name {key!r}")
            pc.variables[key] = _expand(value.strip(), pc.variables, where, number)
        else:
            raise PcFileError(f"{where}:{number}: neither a variable nor a field: {line!r}")
    return pc


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        out.append((start, pending + raw))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _strip_comment(line: str) -> str:
    at = line.find("#")
    return line if at < 0 else line[:at]


def _expand(value: str, variables: dict[str, str], where: str, number: int) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), "")

    expanded = _VAR.sub(substitute, value)
    if len(expanded) > MAX_VALUE:
        raise PcFileError(f"{where}:{number}: value expands beyond {MAX_VALUE} bytes")
    return expanded


def parse_requires(value: str) -> list[Requirement]:
    """Split a ``Requires`` value into requirements (see the module notes)."""
    out: list[Requirement] = []
    i, n = 0, len(value)

    def skip_blanks(pos: int) -> int:
        while pos < n and value[pos] in " \t,":
            pos += 1
        return pos

    while True:
        i = skip_blanks(i)
        if i >= n:
            return out
        start = i
        while i < n and value[i] not in " \t,<>=!":
            i += 1
        name = value[start:i]
        j = i
        while j < n and value[j] in " \t":
            j += 1
        op = next((o for o in OPERATORS if value.startswith(o, j)), "")
        if not name:
            raise PcFileError(f"Requires {value!r}: an operator without a package name")
        if not op:
            out.append(Requirement(name))
            continue
        j += len(op)
        while j < n and value[j] in " \t":
            j += 1
        vstart = j
        while j < n and value[j] not in " \t,":
            j += 1
        version = value[vstart:j]
        if not version:
            raise PcFileError(f"Requires {value!r}: {name} {op} without a version")
        out.append(Requirement(name, op, version))
        i = j
