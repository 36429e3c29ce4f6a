"""``build_style = "gnu_configure"``: an autoconf ``configure`` run out of tree, then make.

The script is regenerated first with ``configure_gen`` (autoreconf unless the
template says ``configure_gen = []``), then run from ``make_dir`` with the
standard directories, ``--build``/``--host`` and, when cross-compiling,
the sysroot for libtool.
"""

from __future__ import annotations

from typing import Any

from apkfarm.build.driver.api import BuildTemplate
from apkfarm.build.driver.styles.configure import build, check, install

DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("make_dir", "build"),
    ("configure_gen", ["autoreconf", "-if", "-W", "none"]),
)

# What autoconf's libtool macros would otherwise probe the build root for.
MAKE_ENV = {
    "lt_cv_sys_lib_dlsearch_path_spec": "/usr/lib64 /usr/lib32 /usr/lib /lib /usr/local/lib"
}


def configure_args(self: BuildTemplate) -> list[str]:
    args = [
        "--prefix=/usr",
        "--sysconfdir=/etc",
        "--sbindir=/usr/bin",
        "--bindir=/usr/bin",
        "--libdir=/usr/lib",
        "--mandir=/usr/share/man",
        "--infodir=/usr/share/info",
        "--localstatedir=/var",
        f"--build={self.get_profile('host').triplet}",
        f"--host={self.profile.triplet}",
    ]
    if self.profile.cross:
        args += [
            f"--with-sysroot={self.sysroot_path}",
            f"--with-libtool-sysroot={self.sysroot_path}",
        ]
    return args


def configure(self: BuildTemplate) -> None:
    env = {**MAKE_ENV, "MAKE": self.make.get_command(), **self.configure_env}
    if self.configure_gen:
        self.do(*self.configure_gen, env=env)
    script = self.cwd / self.configure_script
    script.chmod(0o755)
    (self.cwd / self.make_dir).mkdir(parents=True, exist_ok=True)
    self.do(script, *configure_args(self), *self.configure_args, wrksrc=self.make_dir, env=env)


def use(template: BuildTemplate) -> None:
    template.style_functions.update(configure=configure, build=build, check=check, install=install)
    template.make.env.update(MAKE_ENV)
