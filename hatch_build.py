"""Build hook: compile ``mailslot.migrate._locktrack``, the lock profiler's hot path in C.

It is optional: without a C compiler (or Python's headers) the build goes on and
``mailslot.migrate.locks`` uses its pure-Python core, which is slower (see ``mailslot bench locks``).
An editable install compiles it in place, next to its source; a wheel carries it.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/mailslot/migrate/_locktrack.c")


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile ``source`` into the shared object ``target``; the compiler's complaint if not."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    command = [*cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"{command[0]}: {exc}"
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        name = "_locktrack" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        if version == "editable":
            target = root / SOURCE.parent / name
        else:
            target = Path(tempfile.mkdtemp(prefix="mailslot-build-")) / name
        problem = compile_extension(root / SOURCE, target)
        if problem is not None:
            print(
                f"mailslot: the lock profiler's C core was not built ({problem[:500]}); "
                "mailslot.migrate.locks falls back to pure Python",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(target)] = f"mailslot/migrate/{name}"
