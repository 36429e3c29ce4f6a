"""``self.make``: runs the template's make (or ninja) with cbuild's knobs.

``make_cmd``, ``make_dir``, ``make_env``, ``make_wrapper`` apply to every
invocation; ``make_{build,install,check}_{target,args,env,wrapper}`` to
each kind. ``install`` passes ``DESTDIR`` (as an argument, or in the
environment for ninja).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apkfarm.build.driver.api import BuildTemplate


class Make:
    def __init__(
        self,
        template: BuildTemplate,
        *,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        wrksrc: str | None = None,
        jobs: int | None = None,
    ) -> None:
        self.template = template
        self.command = command
        self.env = dict(env or {})
        self.wrksrc = wrksrc
        self.jobs = jobs

    def get_command(self) -> str:
        return self.command or str(self.template.make_cmd)

    def _invoke(
        self,
        *,
        targets: str | Sequence[str],
        args: Sequence[Any],
        jobs: int | None,
        kind_env: Mapping[str, str] | None,
        env: Mapping[str, str],
        wrksrc: str | None,
        kind_wrapper: Sequence[str],
        wrapper: Sequence[str],
    ) -> subprocess.CompletedProcess[bytes]:
        tmpl = self.template
        run_env: dict[str, str] = dict(tmpl.make_env)
        if kind_env:
            run_env.update(kind_env)
        run_env.update(self.env)
        run_env.update(env)
        argv: list[str] = [f"-j{jobs or self.jobs or tmpl.make_jobs}"]
        if isinstance(targets, str):
            if targets:
                argv.append(targets)
        else:
            argv.extend(str(t) for t in targets)
        argv.extend(str(a) for a in args)
        return tmpl.do(
            *wrapper,
            *kind_wrapper,
            *tmpl.make_wrapper,
            self.get_command(),
            *argv,
            env=run_env,
            wrksrc=wrksrc or self.wrksrc or tmpl.make_dir,
        )

    def invoke(
        self,
        targets: str | Sequence[str] = (),
        args: Sequence[Any] = (),
        *,
        jobs: int | None = None,
        env: Mapping[str, str] | None = None,
        wrksrc: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        return self._invoke(
            targets=targets,
            args=args,
            jobs=jobs,
            kind_env=None,
            env=env or {},
            wrksrc=wrksrc,
            kind_wrapper=(),
            wrapper=wrapper,
        )

    def build(
        self,
        args: Sequence[Any] = (),
        *,
        jobs: int | None = None,
        env: Mapping[str, str] | None = None,
        wrksrc: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        tmpl = self.template
        return self._invoke(
            targets=tmpl.make_build_target,
            args=[*tmpl.make_build_args, *args],
            jobs=jobs,
            kind_env=tmpl.make_build_env,
            env=env or {},
            wrksrc=wrksrc,
            kind_wrapper=tmpl.make_build_wrapper,
            wrapper=wrapper,
        )

    def install(
        self,
        args: Sequence[Any] = (),
        *,
        jobs: int | None = None,
        env: Mapping[str, str] | None = None,
        default_args: bool = True,
        args_use_env: bool = False,
        wrksrc: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        tmpl = self.template
        run_env = dict(env or {})
        base: list[Any] = []
        if default_args:
            if args_use_env or self.get_command() == "ninja":
                run_env.setdefault("DESTDIR", str(tmpl.destdir))
            else:
                base.append(f"DESTDIR={tmpl.destdir}")
        return self._invoke(
            targets=tmpl.make_install_target,
            args=[*base, *tmpl.make_install_args, *args],
            jobs=jobs,
            kind_env=tmpl.make_install_env,
            env=run_env,
            wrksrc=wrksrc,
            kind_wrapper=tmpl.make_install_wrapper,
            wrapper=wrapper,
        )

    def check(
        self,
        args: Sequence[Any] = (),
        *,
        jobs: int | None = None,
        env: Mapping[str, str] | None = None,
        wrksrc: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[bytes]:
        tmpl = self.template
        return self._invoke(
            targets=tmpl.make_check_target,
            args=[*tmpl.make_check_args, *args],
            jobs=jobs,
            kind_env=tmpl.make_check_env,
            env=env or {},
            wrksrc=wrksrc,
            kind_wrapper=tmpl.make_check_wrapper,
            wrapper=wrapper,
        )
