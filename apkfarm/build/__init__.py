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
"""
