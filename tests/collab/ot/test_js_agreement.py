"""mailslot.collab.ot agrees with the npm ``ot-text-unicode`` (the reference), case by case.

``tests/node/ot_cases.js`` generates random cases from a fixed seed, runs them through
``ot-text-unicode`` (installed into ``js/node_modules`` by ``make js/node_modules``) and prints
the inputs and results; here every result is recomputed in Python and compared. Without ``node``
or the npm packages the test is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailslot.collab.ot import (
    apply,
    check,
    compose,
    invert,
    make_invertible,
    normalize,
    strip_invertible,
    transform,
    transform_position,
    transform_selection,
)
from mailslot.errors import OTError

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "tests" / "node" / "ot_cases.js"
PACKAGE = REPO / "js" / "node_modules" / "ot-text-unicode"
SEED = 20240607
COUNT = 10_000
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the JS agreement suite must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not PACKAGE.is_dir():
        _unavailable(f"{PACKAGE} is missing; run `make js/node_modules`")
    done = subprocess.run(
        [node, str(SCRIPT), str(SEED), str(COUNT)],
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _attempt(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OTError as exc:
        return {"error": str(exc)}


def _check_verdict(op: Any) -> Any:
    check(op)
    return True


def python_results(case: dict[str, Any]) -> dict[str, Any]:
    """What mailslot answers for each of the reference's questions about one case."""
    text, a, b, c = case["text"], case["a"], case["b"], case["c"]
    out = {
        "applyA": _attempt(apply, text, a),
        "applyB": _attempt(apply, text, b),
        "aLeft": _attempt(transform, a, b, "left"),
        "aRight": _attempt(transform, a, b, "right"),
        "bLeft": _attempt(transform, b, a, "left"),
        "bRight": _attempt(transform, b, a, "right"),
        "composeAC": _attempt(compose, a, c),
        "positions": [transform_position(p, a) for p in case["positions"]],
        "selection": _attempt(transform_selection, case["selection"], a),
        "makeInvertible": _attempt(make_invertible, a, text),
        "invertA": _attempt(lambda: invert(make_invertible(a, text))),
        "stripA": _attempt(strip_invertible, a),
        "normalizeMessy": _attempt(normalize, case["messy"]),
        "checkBad": _attempt(_check_verdict, case["bad"]),
        "applyTooLong": _attempt(apply, text, case["tooLong"]),
    }
    composed = out["composeAC"]
    out["applyComposed"] = composed if "error" in composed else _attempt(apply, text, composed)
    return out


def _same(js: Any, py: Any) -> bool:
    if isinstance(js, dict) and "error" in js:
        return isinstance(py, dict) and "error" in py  # both refuse; the wording differs
    return bool(js == py)


def test_reference_generated_enough_cases(reference: dict[str, Any]) -> None:
    assert reference["version"].startswith("4.")
    assert len(reference["cases"]) == COUNT >= 10_000
    # the cases exercise what they claim to: astral text, refusals and unnormalized ops
    cases = reference["cases"]
    assert sum(any(ord(ch) > 0xFFFF for ch in c["text"]) for c in cases) > COUNT // 10
    assert sum(c["out"]["checkBad"] is True for c in cases) > COUNT // 20
    assert sum(isinstance(c["out"]["checkBad"], dict) for c in cases) > COUNT // 2


def test_python_agrees_with_ot_text_unicode(reference: dict[str, Any]) -> None:
    mismatches: list[str] = []
    total = 0
    for index, case in enumerate(reference["cases"]):
        ours = python_results(case)
        for key, theirs in case["out"].items():
            if not _same(theirs, ours[key]):
                total += 1
                if len(mismatches) < 5:
                    inputs = {k: case[k] for k in ("text", "a", "b", "c", "bad", "messy")}
                    mismatches.append(
                        f"case {index} {key}:\n  inputs: {json.dumps(inputs, ensure_ascii=False)}"
                        f"\n  ot-text-unicode: {json.dumps(theirs, ensure_ascii=False)}"
                        f"\n  mailslot:        {json.dumps(ours[key], ensure_ascii=False)}"
                    )
    assert total == 0, (
        f"{total} results differ from ot-text-unicode (seed {reference['seed']}); first ones:\n"
        + "\n".join(mismatches)
    )
