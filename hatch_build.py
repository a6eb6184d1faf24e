"""Build hook: compile mailslot's optional C extensions, each the hot path of one module.

- ``mailslot.runtime._speedups``: a local tell and an actor's turn (``mailslot bench runtime``);
- ``mailslot.migrate._locktrack``: the lock profiler's tracked locks (``mailslot bench locks``).

Both are optional: without a C compiler (or Python's headers) the build goes on and the module
uses its pure-Python twin, which is slower. An editable install compiles them in place, next to
their sources; a wheel carries them.
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

EXTENSIONS = {
    Path("src/mailslot/runtime/_speedups.c"): "the runtime's C core (mailslot.runtime falls back "
    "to pure Python)",
    Path("src/mailslot/migrate/_locktrack.c"): "the lock profiler's C core "
    "(mailslot.migrate.locks falls back to pure Python)",
}


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
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        built = Path(tempfile.mkdtemp(prefix="mailslot-build-"))
        for source, what in EXTENSIONS.items():
            name = source.stem + suffix
            target = root / source.parent / name if version == "editable" else built / name
            target.unlink(missing_ok=True)  # a failed build must not leave an older one in use
            problem = compile_extension(root / source, target)
            if problem is not None:
                print(f"mailslot: {what} was not built: {problem[:500]}", file=sys.stderr)
                continue
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            if version != "editable":
                package = source.parent.relative_to("src").as_posix()
                build_data["force_include"][str(target)] = f"{package}/{name}"
