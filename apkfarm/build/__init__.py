"""The builder's domain steps that run outside the sandbox, one concern per module.

* ``extract`` — unpack source archives safely into a build directory.
* ``elf`` — read what the dynamic loader would read from an ELF file.
* ``staged`` — a staged package's tree, walked and resolved without leaving it.
* ``pkgconf`` — read pkg-config ``.pc`` files.
* ``scan`` — automatic ``so:``/``pc:``/``cmd:`` provides and dependencies of
  staged packages, like cbuild's package hooks.
* ``lint`` — cbuild's packaging rules over a staged package tree.
* ``options`` — template ``options`` with cbuild's defaults.
* ``errors`` — what these steps raise.

None of them runs template code or a subprocess; they read files and return
typed results, and refuse bad input with an ``apkfarm.build.errors`` exception
whose message names the archive, package or file.

The build runtime uses them (``runner.run_build(request, log)`` is its entry):

* ``runner`` — one build, host side: setup, dependencies, extract, the
  sandboxed driver, packaging; ``result`` — its request, result and failure;
* ``driver/`` — the standard-library program that runs the template's phases
  inside the build sandbox (``styles/`` one module per build style);
* ``supervise`` — runs the driver: live output, phase events, limits, kill;
* ``load`` — evaluates the one template a build needs, in the evaluation sandbox;
* ``toolchain`` — compilers, flags and qemu per target; ``sysroot`` — build
  dependencies from the farm's signed repository; ``packaging`` — staged
  trees to unsigned packages; ``log`` — the build log's events and sinks.
"""
