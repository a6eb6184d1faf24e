"""The pure core of a commit: new, duplicate, or not fitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.errors import VersionConflict
from mailslot.store import CommitResult, OpRecord
from mailslot.store.plan import CommitPlan, HeadUpdate, OpKey, plan_commit

from .conftest import op


def test_new_documents_start_at_version_zero() -> None:
    plan = plan_commit([op("a", 0), op("b", 0), op("a", 1)], stored={}, heads={})
    assert plan.results == (CommitResult("committed", 0),) * 2 + (CommitResult("committed", 1),)
    assert plan.inserts == (0, 1, 2)
    assert plan.heads == (
        HeadUpdate(collection="docs", doc="a", version=2, created=1000, updated=1010),
        HeadUpdate(collection="docs", doc="b", version=1, created=1000, updated=1000),
    )


def test_existing_document_continues_from_its_head() -> None:
    plan = plan_commit([op("a", 4, seq=9)], stored={}, heads={("docs", "a"): 4})
    assert plan.results == (CommitResult("committed", 4),)
    assert plan.heads[0].version == 5


def test_duplicates_report_the_stored_version_and_write_nothing() -> None:
    stored: dict[OpKey, int] = {("docs", "a", "conn-a", 0): 0}
    plan = plan_commit([op("a", 3, seq=0)], stored=stored, heads={("docs", "a"): 1})
    assert plan == CommitPlan((CommitResult("duplicate", 0),), (), ())


def test_a_duplicate_inside_the_batch_is_the_first_ones_version() -> None:
    plan = plan_commit([op("a", 0), op("a", 1, seq=0)], stored={}, heads={})
    assert plan.results == (CommitResult("committed", 0), CommitResult("duplicate", 0))
    assert plan.inserts == (0,)


def test_misfits_are_every_op_of_the_document_from_the_first_bad_one() -> None:
    ops = [op("a", 0), op("b", 1), op("a", 1), op("b", 2), op("b", 3, seq=0, src="x")]
    with pytest.raises(VersionConflict) as caught:
        plan_commit(ops, stored={}, heads={("docs", "b"): 2})
    conflict = caught.value
    assert conflict.misfits == ((1, 2), (3, 2), (4, 2))
    assert (conflict.collection, conflict.doc_id, conflict.version, conflict.expected) == (
        "docs",
        "b",
        1,
        2,
    )
    assert "another op is already stored at that version" in str(conflict)
    assert "2 more ops rejected" in str(conflict)


def test_a_version_beyond_the_head_is_a_gap() -> None:
    with pytest.raises(VersionConflict, match="the log does not reach it") as caught:
        plan_commit([op("a", 1)], stored={}, heads={})
    assert caught.value.misfits == ((0, 0),)


# A writer per document that mostly follows its log, sometimes resends an op it sent before and
# sometimes gets the version wrong; whatever it does, planning keeps the log gap-free and
# replaying a committed batch is all duplicates.
_actions = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["next", "next", "next", "resend", "wrong"])),
    max_size=30,
)


def _batch(actions: list[tuple[int, str]], heads: dict[str, int]) -> list[OpRecord]:
    version = dict(heads)
    seq = dict.fromkeys(heads, 100)
    ops: list[OpRecord] = []
    for doc_index, action in actions:
        doc = f"d{doc_index}"
        sent = [o for o in ops if o.doc == doc]
        if action == "resend" and sent:
            ops.append(sent[-1])
        elif action == "wrong":
            ops.append(op(doc, version.get(doc, 0) + 2, seq=seq.get(doc, 100) + 1000))
        else:
            ops.append(op(doc, version.get(doc, 0), seq=seq.get(doc, 100)))
            version[doc] = version.get(doc, 0) + 1
            seq[doc] = seq.get(doc, 100) + 1
    return ops


@given(_actions, st.dictionaries(st.sampled_from(["d0", "d1", "d2"]), st.integers(0, 3)))
def test_plans_keep_logs_gap_free_and_replays_idempotent(
    actions: list[tuple[int, str]], start: dict[str, int]
) -> None:
    logs: dict[str, list[OpRecord]] = {
        d: [op(d, v, src="old", seq=v) for v in range(n)] for d, n in start.items()
    }

    def state() -> tuple[dict[OpKey, int], dict[tuple[str, str], int]]:
        stored = {
            (o.collection, o.doc, o.src, o.seq): o.version for log in logs.values() for o in log
        }
        return stored, {("docs", d): len(log) for d, log in logs.items() if log}

    ops = _batch(actions, start)
    stored, heads = state()
    try:
        plan = plan_commit(ops, stored=stored, heads=heads)
    except VersionConflict as conflict:
        bad = [p for p, _ in conflict.misfits]
        assert bad == sorted(set(bad))
        assert bad
        first_bad: dict[str, int] = {}
        for p in bad:
            first_bad.setdefault(ops[p].doc, p)
        kept = [p for p in range(len(ops)) if p not in set(bad)]
        ops = [ops[p] for p in kept]
        plan = plan_commit(ops, stored=stored, heads=heads)  # the committer's retry fits
        for i in plan.inserts:  # nothing built on a misfit gets in
            assert kept[i] < first_bad.get(ops[i].doc, len(kept) + len(bad))
    for i in plan.inserts:
        logs.setdefault(ops[i].doc, []).append(ops[i])
    for log in logs.values():
        assert [o.version for o in log] == list(range(len(log)))
    assert {h.doc: h.version for h in plan.heads} == {
        d: len(log) for d, log in logs.items() if any(ops[i].doc == d for i in plan.inserts)
    }
    stored, heads = state()
    again = plan_commit(ops, stored=stored, heads=heads)
    assert again.inserts == ()
    assert [r.version for r in again.results] == [r.version for r in plan.results]
    assert {r.status for r in again.results} <= {"duplicate"}
