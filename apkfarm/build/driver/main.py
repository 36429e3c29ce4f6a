"""Entry point: ``python -I -S <lib>/apkfarm/build/driver/main.py CONFIG CONTROL_FD ACK_FD``.

``<lib>`` holds ``apkfarm/templates/worker.py`` and ``apkfarm/build/driver/``
and nothing else of apkfarm; with ``-I`` the script's directory is not on
``sys.path``, so it is put there explicitly.

Exit status 0 and a ``result`` event: the packages are staged. Otherwise a
``failed`` event names the phase and what went wrong (a command's exit
status, the template's ``self.error()``, a traceback for anything else).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

if __name__ == "__main__":
    # <lib>, which holds this package and the template worker and nothing else
    sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[3]))  # noqa: PTH100 - not resolved: a symlinked layout must stay itself

# These imports need the path above when run as a script.
from apkfarm.build.driver.api import CommandFailed
from apkfarm.build.driver.config import BuildConfig
from apkfarm.build.driver.evaluate import evaluate
from apkfarm.build.driver.phases import PhaseRunner
from apkfarm.build.driver.protocol import Channel
from apkfarm.templates import worker


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        sys.stderr.write("usage: main.py CONFIG CONTROL_FD ACK_FD\n")
        return 2
    channel = Channel(int(argv[2]), int(argv[3]))
    phase = "evaluate"
    filename = "template.py"
    try:
        config = BuildConfig.from_json(Path(argv[1]).read_text(encoding="utf-8"))
        evaluated = evaluate(config)
        filename = evaluated.filename
        runner = PhaseRunner(evaluated, channel)
        try:
            packages = runner.run()
        finally:
            phase = runner.phase
        channel.send("result", packages=packages)
        return 0
    except CommandFailed as error:
        channel.send("failed", phase=phase, message=str(error)[:4000])
    except worker.TemplateError as error:
        channel.send("failed", phase=phase, message=worker._describe(error, filename)[:4000])
    except Exception as error:
        traceback.print_exc()
        message = worker._describe(error, filename)
        channel.send("failed", phase=phase, message=message[:4000])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
