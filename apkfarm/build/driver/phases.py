"""The build phases, in cbuild's order, each announced to the host with its timing.

Sources are extracted by the host before the driver starts; a template's
``init_extract``/``pre_extract``/``post_extract`` hooks run first here (a
template's own ``do_extract`` is refused: sources are unpacked by the
builder's checked extractor). Then each phase runs ``init_<phase>``,
``pre_<phase>``, the phase itself (the template's ``<phase>`` or
``do_<phase>``, else its build style's, else the default), ``post_<phase>``:

* ``prepare`` — nothing by default;
* ``patch`` — ``patches/*.patch`` and ``*.diff`` of the template, in name
  order, with ``patch -sNp1``;
* ``configure``, ``build`` — the build style's;
* ``check`` — the build style's; skipped when cross-compiling, with the
  ``!check`` option, or when the builder says so;
* ``install`` — the template's or the style's (one of them must exist),
  then ``post_install``'s own steps (file modes, libtool archives).

``split`` follows: subpackages and automatic packages (see ``split``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from apkfarm.build.driver import post_install, split, styles
from apkfarm.build.driver.api import BuildTemplate, TemplateError, _log
from apkfarm.build.driver.evaluate import Evaluated
from apkfarm.build.driver.protocol import Channel

PHASES: tuple[str, ...] = ("prepare", "patch", "configure", "build", "check", "install")
EXTRACT_HOOKS: tuple[str, ...] = ("init_extract", "pre_extract", "post_extract")


class PhaseRunner:
    def __init__(self, evaluated: Evaluated, channel: Channel) -> None:
        self.evaluated = evaluated
        self.template: BuildTemplate = evaluated.template
        self.channel = channel
        self.phase = "evaluate"

    def setup(self) -> None:
        """Plug in the build style and its field defaults; write the toolchain wrappers."""
        template = self.template
        config = template.config
        if self.evaluated.function("do_extract") or self.evaluated.function("do_fetch"):
            raise TemplateError(
                "do_extract/do_fetch are not supported: sources are fetched and "
                "extracted by the builder"
            )
        style_name = template.build_style
        if style_name:
            try:
                style = styles.load(str(style_name))
            except LookupError as error:
                raise TemplateError(str(error)) from None
            for field, value in style.DEFAULTS:
                if not self.evaluated.assigned(field):
                    setattr(template, field, value if not isinstance(value, list) else list(value))
            style.use(template)
        template.cwd = template.srcdir / str(template.build_wrksrc)
        wrappers = config.toolchain.get("wrappers") or {}
        if wrappers:
            directory = template.statedir / "wrappers"
            directory.mkdir(parents=True, exist_ok=True)
            for name, argv in sorted(wrappers.items()):
                script = directory / name
                words = " ".join(_shell_quote(word) for word in argv)
                script.write_text(f'#!/bin/sh\nexec {words} "$@"\n', encoding="utf-8")
                script.chmod(0o755)

    def run(self) -> list[dict[str, Any]]:
        self.setup()
        hooks = [h for h in EXTRACT_HOOKS if self.evaluated.function(h)]
        if hooks:
            self._timed("extract", lambda: self._hooks(hooks))
        for phase in PHASES:
            skipped = self._skip_reason(phase)
            if skipped:
                self._skipped(phase, skipped)
                continue
            self._timed(phase, lambda phase=phase: self._run_phase(phase))  # type: ignore[misc]
        self.template.install_done = True
        packages: list[dict[str, Any]] = []

        def do_split() -> None:
            packages.extend(split.split(self.evaluated, autosplit=self.template.config.autosplit))

        self._timed("split", do_split)
        return packages

    # --- one phase ---------------------------------------------------------------------

    def _skip_reason(self, phase: str) -> str | None:
        if phase != "check":
            return None
        if self.template.config.skip_check:
            return self.template.config.skip_check
        if not self.template.options.get("check", True):
            return "the template's !check option"
        return None

    def _timed(self, phase: str, work: Callable[[], None]) -> None:
        self.phase = phase
        self.template.current_phase = phase
        self.channel.send("phase", phase=phase, state="start")
        started = time.monotonic()
        work()
        self.channel.send(
            "phase", phase=phase, state="end", status="ok", seconds=time.monotonic() - started
        )

    def _skipped(self, phase: str, reason: str) -> None:
        _log(self.template.pkgname, f"{phase} skipped: {reason}")
        self.channel.send("phase", phase=phase, state="start")
        self.channel.send(
            "phase", phase=phase, state="end", status="skipped", reason=reason, seconds=0.0
        )

    def _hooks(self, names: list[str]) -> None:
        for name in names:
            function = self.evaluated.function(name)
            if function is not None:
                _log(self.template.pkgname, f"running {name}")
                function(self.template)

    def _run_phase(self, phase: str) -> None:
        template = self.template
        self._hooks([f"init_{phase}", f"pre_{phase}"])
        main = self.evaluated.function(phase) or self.evaluated.function(f"do_{phase}")
        if main is None:
            main = template.style_functions.get(phase)
        if main is not None:
            main(template)
        elif phase == "patch":
            self._apply_patches()
        elif phase == "install":
            raise TemplateError("the template has no install function and no build_style")
        self._hooks([f"post_{phase}"])
        if phase == "install":
            template.destdir.mkdir(parents=True, exist_ok=True)
            post_install.apply_file_modes(template.destdir, template.file_modes, template.pkgname)
            if not template.options.get("keeplibtool", False):
                for removed in post_install.remove_libtool_archives(template.destdir):
                    _log(template.pkgname, f"removed libtool archive {removed}")

    def _apply_patches(self) -> None:
        template = self.template
        directory = template.patches_path
        if not directory.is_dir():
            return
        patches = sorted(
            p for p in directory.iterdir() if p.suffix in (".patch", ".diff") and p.is_file()
        )
        for patch in patches:
            _log(template.pkgname, f"patching: {patch.name}")
            template.do("patch", "-sNp1", "-i", str(patch), wrksrc=template.srcdir)


def _shell_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"
