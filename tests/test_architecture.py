"""Project-wide rules, checked by reading the source (trio's dogfooding rule).

- No locks in the message-passing code: actors own state. Only ``legacy/`` and ``migrate/`` may use
  ``threading``/``asyncio`` locks, semaphores, conditions and events.
- Layers import downward only (DESIGN.md section 1).
- Observability is an adapter: only the server, the CLI and the benchmarks import
  ``mailslot.observe``; the layers below report through the plain-Python ``mailslot.meters``, and
  never import Prometheus or OpenTelemetry themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mailslot"
LOCK_EXEMPT = {"legacy", "migrate"}
THREADING_FORBIDDEN = {"Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event"}
ASYNCIO_FORBIDDEN = {"Lock", "Semaphore", "BoundedSemaphore", "Condition"}

# package -> mailslot packages it must never import
FORBIDDEN_IMPORTS = {
    "runtime": {"wire", "cluster", "store", "collab", "observe", "legacy", "migrate", "server"},
    "wire": {"cluster", "store", "collab", "observe", "legacy", "migrate", "server"},
    "store": {"cluster", "collab", "observe", "legacy", "migrate", "server"},
    "cluster": {"collab", "observe", "legacy", "migrate", "server"},
    "observe": {"wire", "cluster", "store", "collab", "legacy", "migrate", "server"},
}
# only these may import mailslot.observe (the layers below report through mailslot.meters)
OBSERVE_IMPORTERS = {"observe", "server.py", "cli.py", "bench"}
# the metrics and tracing libraries live in observe (and the server that wires it) only
OBSERVE_LIBRARIES = {"prometheus_client", "opentelemetry"}
OBSERVE_LIBRARY_IMPORTERS = {"observe", "server.py"}
# sans-I/O modules: standard library, mailslot.errors and their own package only
PURE = {
    "collab/ot",
    "collab/protocol",
    "wire",
    "runtime/supervision.py",
    "cluster/routing.py",
    "meters.py",
}
PURE_ALLOWED_THIRD_PARTY = {"msgspec"}


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _lock_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Every reference to a forbidden primitive, however it was imported."""
    aliases: dict[str, str] = {}  # local name -> "threading"/"asyncio" (module or member)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in {"threading", "asyncio"}:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in {"threading", "asyncio"}:
            forbidden = THREADING_FORBIDDEN if node.module == "threading" else ASYNCIO_FORBIDDEN
            for a in node.names:
                if a.name in forbidden:
                    found.append((node.lineno, f"from {node.module} import {a.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module == "threading" and node.attr in THREADING_FORBIDDEN:
                found.append((node.lineno, f"threading.{node.attr}"))
            if module == "asyncio" and node.attr in ASYNCIO_FORBIDDEN:
                found.append((node.lineno, f"asyncio.{node.attr}"))
    return found


def test_no_locks_outside_legacy_and_migrate() -> None:
    offenders = []
    for path in _python_files(SRC):
        rel = path.relative_to(SRC)
        if rel.parts[0] in LOCK_EXEMPT:
            continue
        for lineno, what in _lock_uses(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{rel}:{lineno}: {what}")
    assert offenders == [], "locks in message-passing code:\n" + "\n".join(offenders)


def test_lock_scanner_sees_every_spelling() -> None:
    code = (
        "import threading\nimport asyncio as aio\nfrom threading import RLock\n"
        "a = threading.Lock()\nb = aio.Condition()\nc = threading.Event()\n"
    )
    found = {what for _, what in _lock_uses(ast.parse(code))}
    assert found == {
        "from threading import RLock",
        "threading.Lock",
        "asyncio.Condition",
        "threading.Event",
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_layers_import_downward_only(package: str) -> None:
    root = SRC / package
    if not root.exists():
        pytest.skip(f"mailslot.{package} does not exist yet")
    bad = []
    for path in _python_files(root):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "mailslot" and len(parts) > 1 and parts[1] in FORBIDDEN_IMPORTS[package]:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert bad == []


def test_only_the_server_cli_and_bench_import_observe() -> None:
    bad = []
    for path in _python_files(SRC):
        rel = path.relative_to(SRC)
        if rel.parts[0] in OBSERVE_IMPORTERS:
            continue
        for name in _imports(path):
            if name == "mailslot.observe" or name.startswith("mailslot.observe."):
                bad.append(f"{rel} imports {name}")
    assert bad == []


def test_only_observe_imports_the_metrics_and_tracing_libraries() -> None:
    bad = []
    for path in _python_files(SRC):
        rel = path.relative_to(SRC)
        if rel.parts[0] in OBSERVE_LIBRARY_IMPORTERS:
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            # structlog is fine for logging in the upper layers, but not in the runtime
            if top in OBSERVE_LIBRARIES or (top == "structlog" and rel.parts[0] == "runtime"):
                bad.append(f"{rel} imports {name}")
    assert bad == []


@pytest.mark.parametrize("pure", sorted(PURE))
def test_pure_cores_import_only_stdlib(pure: str) -> None:
    import sys

    target = SRC / pure
    if not target.exists():
        pytest.skip(f"mailslot/{pure} does not exist yet")
    files = [target] if target.is_file() else _python_files(target)
    own = "mailslot." + pure.removesuffix(".py").replace("/", ".")
    bad = []
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "mailslot":
                if name != "mailslot.errors" and not name.startswith(own):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
            elif top not in sys.stdlib_module_names and top not in PURE_ALLOWED_THIRD_PARTY:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert bad == []
