"""The build driver: the program that runs a template's phases inside the build sandbox.

Everything in this package uses the standard library only, and the template
worker (``apkfarm/templates/worker.py``) for evaluating the template: the
sandbox binds exactly these files, laid out so that ``apkfarm.templates.worker``
and ``apkfarm.build.driver`` import as namespace packages, and runs
``python -I -S .../apkfarm/build/driver/main.py CONFIG CONTROL_FD``.

The order of the work is visible from the modules:

* ``config`` — what the host decided for this build (paths, tools, flags);
* ``evaluate`` — the template evaluated again, here, with a build-time ``self``
  (``api``) so that hooks and subpackage functions can run;
* ``styles/`` — one module per build style, each with a ``use(template)``
  that plugs in its configure/build/check/install functions;
* ``phases`` — prepare, patch, configure, build, check, install, each as
  ``init_``, ``pre_``, the phase function, ``post_``; then ``post_install``'s
  own steps and ``split`` (subpackages and automatic ``-man``/``-doc``/...);
* ``protocol`` — phase markers and the result, sent to the host on their own
  descriptor; the build's output goes to stdout/stderr as it is produced.

The host trusts none of it: it checks the package names it is told about,
scans and lints the staged trees itself, and writes the packages.
"""
