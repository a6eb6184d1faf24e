from __future__ import annotations

import statistics
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailslot.cluster.routing import (
    DEFAULT_SHARDS,
    ENTITY_KINDS,
    MAX_ID_LENGTH,
    Membership,
    assignment,
    check_node_id,
    entity_key,
    parse_entity_key,
    rank_nodes,
    roles,
    shard_for,
)
from mailslot.errors import ConfigError, InvalidKey

# --- the stable hash ----------------------------------------------------------------------------

# Computed once by mailslot; they must never change (every node of every version routes by them).
VECTORS = [
    ("docs/d1", 61, 125, 6),
    ("docs/hello", 46, 878, 5),
    ("presence/d1", 56, 824, 6),
    ("notify/ann", 44, 492, 3),
    ("", 32, 160, 0),
    ("é/ü", 32, 352, 6),
    ("docs/" + "x" * 100, 15, 207, 0),
]


@pytest.mark.parametrize(("key", "s64", "s1024", "s7"), VECTORS)
def test_shard_for_fixed_vectors(key: str, s64: int, s1024: int, s7: int) -> None:
    assert shard_for(key) == s64
    assert shard_for(key, 1024) == s1024
    assert shard_for(key, 7) == s7


@given(st.text(), st.integers(1, 70_000).filter(lambda n: n <= 65536))
def test_shard_for_is_in_range_and_deterministic(key: str, shards: int) -> None:
    shard = shard_for(key, shards)
    assert 0 <= shard < shards
    assert shard_for(key, shards) == shard


def test_shard_for_takes_lone_surrogates() -> None:
    assert 0 <= shard_for("docs/\ud800") < DEFAULT_SHARDS


def test_shard_for_spreads_keys_evenly() -> None:
    counts = Counter(shard_for(f"docs/{i}") for i in range(64_000))
    assert len(counts) == 64
    assert min(counts.values()) > 850
    assert max(counts.values()) < 1150


@pytest.mark.parametrize("shards", [0, -1, 65537, 2.0, "64"])
def test_shard_count_is_checked(shards: object) -> None:
    with pytest.raises(ConfigError, match="shard count"):
        shard_for("docs/d1", shards)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shard count"):
        assignment(["a"], shards)  # type: ignore[arg-type]


# --- rendezvous hashing ------------------------------------------------------------------------

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
node_sets = st.sets(node_ids, min_size=1, max_size=8)


def test_rank_nodes_fixed_example() -> None:
    nodes = ["node-a", "node-b", "node-c"]
    assert rank_nodes(0, nodes) == ["node-c", "node-b", "node-a"]
    assert rank_nodes(2, nodes) == ["node-a", "node-c", "node-b"]
    assert assignment(nodes)[2] == ("node-a", "node-c")


@given(node_sets, st.integers(0, 1000))
def test_rank_nodes_is_a_deterministic_permutation(nodes: set[str], shard: int) -> None:
    ranked = rank_nodes(shard, nodes)
    assert sorted(ranked) == sorted(nodes)
    assert rank_nodes(shard, sorted(nodes, reverse=True)) == ranked
    assert rank_nodes(shard, [*nodes, *nodes]) == ranked


@given(node_sets, st.integers(1, 128))
def test_assignment_primary_and_standby(nodes: set[str], shards: int) -> None:
    table = assignment(nodes, shards)
    assert sorted(table) == list(range(shards))
    assert assignment(sorted(nodes, reverse=True), shards) == table
    for shard, (primary, standby) in table.items():
        ranked = rank_nodes(shard, nodes)
        assert (primary, standby) == (ranked[0], ranked[1] if len(ranked) > 1 else None)
        assert primary in nodes
        if len(nodes) >= 2:
            assert standby in nodes
            assert standby != primary
        else:
            assert standby is None


def test_no_nodes_no_owners() -> None:
    assert assignment([]) == {}
    assert rank_nodes(3, []) == []


@given(st.sets(node_ids, min_size=2, max_size=8), st.data())
def test_removing_a_node_moves_only_its_shards_to_their_standby(
    nodes: set[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(sorted(nodes)))
    before = assignment(nodes)
    after = assignment(nodes - {gone})
    for shard, (primary, standby) in before.items():
        if primary == gone:
            assert after[shard][0] == standby
        else:
            assert after[shard][0] == primary
            if standby != gone:
                assert after[shard][1] == standby


@given(node_sets, node_ids)
def test_adding_a_node_moves_shards_only_to_it(nodes: set[str], new: str) -> None:
    before = assignment(nodes)
    after = assignment(nodes | {new})
    for shard, (primary, _) in after.items():
        assert primary in (before[shard][0], new)


@given(st.lists(node_ids, min_size=3, max_size=3, unique=True))
def test_every_node_of_three_gets_a_share(nodes: list[str]) -> None:
    # Binomial(64, 1/3): below 1 or above 50 has a probability under 1e-11.
    counts = Counter(primary for primary, _ in assignment(nodes).values())
    assert all(1 <= counts[n] <= 50 for n in nodes)


def test_balance_for_three_nodes_and_64_shards() -> None:
    """Rendezvous hashing is binomially balanced: mean 21.3 shards, standard deviation 3.8."""
    loads = []
    for i in range(500):
        nodes = [f"node-{i}-{j}" for j in range(3)]
        counts = Counter(primary for primary, _ in assignment(nodes).values())
        loads.extend(counts[n] for n in nodes)
        assert all(6 <= counts[n] <= 38 for n in nodes), counts
    assert abs(statistics.mean(loads) - 64 / 3) < 1e-9
    assert statistics.pstdev(loads) < 4.5
    counts = Counter(primary for primary, _ in assignment(["node-a", "node-b", "node-c"]).values())
    assert sorted(counts.values()) == [18, 20, 26]


def test_roles() -> None:
    table = assignment(["node-a", "node-b", "node-c"])
    primary, standby = roles("node-a", table)
    assert primary == {s for s, (p, _) in table.items() if p == "node-a"}
    assert standby == {s for s, (_, b) in table.items() if b == "node-a"}
    assert primary.isdisjoint(standby)
    assert roles("node-z", table) == (frozenset(), frozenset())


# --- entity keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "entity_id", "key"),
    [
        ("docs", "d1", "docs/d1"),
        ("presence", "d1", "presence/d1"),
        ("notify", "ann@example.com", "notify/ann@example.com"),
        ("docs", "a.b_c~d:e+f=g-h", "docs/a.b_c~d:e+f=g-h"),
    ],
)
def test_entity_keys(kind: str, entity_id: str, key: str) -> None:
    assert entity_key(kind, entity_id) == key  # type: ignore[arg-type]
    assert parse_entity_key(key) == (kind, entity_id)


@pytest.mark.parametrize(
    ("kind", "entity_id", "message"),
    [
        ("docs", "", "docs id is empty"),
        ("notify", "a b", r"notify id 'a b' has ' ' at position 1"),
        ("docs", "a/b", r"has '/' at position 1"),
        ("docs", "doc*", r"has '\*' at position 3"),
        ("docs", "#", r"has '#' at position 0"),
        ("docs", "é", r"has 'é' at position 0"),
        ("docs", "x" * (MAX_ID_LENGTH + 1), f"201 characters long; the limit is {MAX_ID_LENGTH}"),
        ("docs", 5, "docs id must be a string, got int"),
        ("files", "d1", "unknown entity kind 'files'; expected one of docs, presence, notify"),
    ],
)
def test_invalid_entity_ids(kind: str, entity_id: object, message: str) -> None:
    with pytest.raises(InvalidKey, match=message) as info:
        entity_key(kind, entity_id)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_longest_valid_id() -> None:
    assert entity_key("docs", "x" * MAX_ID_LENGTH) == "docs/" + "x" * MAX_ID_LENGTH


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("docs", "not of the form <kind>/<id>"),
        ("files/d1", "unknown kind 'files'"),
        ("docs/", "docs id is empty"),
        ("docs/a/b", "has '/' at position 1"),
        (7, "not of the form"),
    ],
)
def test_invalid_entity_keys(key: object, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        parse_entity_key(key)  # type: ignore[arg-type]


@given(st.sampled_from(ENTITY_KINDS), st.text())
def test_entity_key_accepts_exactly_what_parse_accepts(kind: str, entity_id: str) -> None:
    try:
        key = entity_key(kind, entity_id)  # type: ignore[arg-type]
    except InvalidKey:
        with pytest.raises(InvalidKey):
            parse_entity_key(f"{kind}/{entity_id}")
        return
    assert parse_entity_key(key) == (kind, entity_id)


def test_node_ids() -> None:
    assert check_node_id("node-1.eu") == "node-1.eu"
    with pytest.raises(InvalidKey, match="node id is empty"):
        check_node_id("")


# --- membership ---------------------------------------------------------------------------------


def test_nodes_join_and_expire() -> None:
    members = Membership(timeout=10.0)
    assert (members.live, members.version) == (frozenset(), 0)
    assert members.heartbeat("a", 0.0) is True
    assert members.heartbeat("b", 1.0) is True
    assert members.heartbeat("a", 5.0) is False
    assert (members.live, members.version) == ({"a", "b"}, 2)
    assert members.tick(10.9) == frozenset()
    assert members.tick(11.0) == {"b"}  # seen at 1.0: exactly `timeout` old is dead
    assert (members.live, members.version) == ({"a"}, 3)
    assert members.tick(14.9) == frozenset()
    assert members.version == 3
    assert members.tick(15.0) == {"a"}
    assert (members.live, members.version) == (frozenset(), 4)


def test_local_node_is_always_live() -> None:
    members = Membership(timeout=1.0, local="me")
    assert members.live == {"me"}
    assert members.heartbeat("me", 0.0) is False
    assert members.tick(100.0) == frozenset()
    assert members.leave("me") is False
    assert members.live == {"me"}
    assert members.last_seen("me") is None


def test_leave_and_come_back() -> None:
    members = Membership(timeout=10.0)
    members.heartbeat("a", 0.0)
    assert members.leave("a") is True
    assert members.leave("a") is False
    assert members.live == frozenset()
    assert members.heartbeat("a", 1.0) is True
    assert members.statistics().leaves == 1


def test_stale_and_out_of_order_heartbeats() -> None:
    members = Membership(timeout=10.0)
    members.heartbeat("a", 20.0)
    assert members.heartbeat("b", 10.0) is False  # already 10 s old when it arrives
    assert "b" not in members.live
    members.heartbeat("a", 15.0)  # older than the one we have: kept the newer
    assert members.last_seen("a") == 20.0
    assert members.tick(5.0) == frozenset()  # time does not run backwards
    assert members.tick(29.9) == frozenset()
    assert members.statistics().rejected == 1


def test_max_nodes_bounds_the_live_set() -> None:
    members = Membership(timeout=10.0, local="me", max_nodes=3)
    assert members.heartbeat("a", 0.0) is True
    assert members.heartbeat("b", 0.0) is True
    assert members.heartbeat("c", 0.0) is False
    assert members.live == {"me", "a", "b"}
    assert members.heartbeat("a", 1.0) is False  # known nodes still refresh
    assert members.last_seen("a") == 1.0
    stats = members.statistics()
    assert (stats.rejected, stats.joins, stats.heartbeats) == (1, 2, 3)


def test_membership_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="timeout must be positive"):
        Membership(timeout=0)
    with pytest.raises(ConfigError, match="max_nodes"):
        Membership(timeout=1, max_nodes=0)
    with pytest.raises(InvalidKey, match="node id"):
        Membership(timeout=1, local="bad id")
    with pytest.raises(InvalidKey, match="node id is empty"):
        Membership(timeout=1).heartbeat("", 0.0)


class MembershipModel(RuleBasedStateMachine):
    """Membership against a plain model: live = local + nodes with a young last fresh heartbeat."""

    TIMEOUT = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.members = Membership(timeout=self.TIMEOUT, local="me", max_nodes=4)
        self.now = 0.0
        self.members.tick(self.now)
        self.seen: dict[str, float] = {}
        self.versions = [self.members.version]
        self.lives = [self.members.live]

    # Whole seconds, so that heartbeats exactly `timeout` old come up.
    @rule(node=st.sampled_from(["a", "b", "c", "d", "e"]), lag=st.integers(0, 8))
    def heartbeat(self, node: str, lag: int) -> None:
        at = self.now - lag
        fresh = lag < self.TIMEOUT
        joined = self.members.heartbeat(node, at)
        expected_join = fresh and node not in self.seen and len(self.seen) + 1 < 4
        assert joined == expected_join
        if fresh and (node in self.seen or expected_join):
            self.seen[node] = max(self.seen.get(node, at), at)

    @rule(step=st.integers(0, 4))
    def tick(self, step: int) -> None:
        self.now += step
        expired = self.members.tick(self.now)
        gone = {n for n, t in self.seen.items() if self.now - t >= self.TIMEOUT}
        assert expired == gone
        for node in gone:
            del self.seen[node]

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(sorted(self.seen)))
        assert self.members.leave(node) is True
        del self.seen[node]

    @invariant()
    def live_set_matches_the_model(self) -> None:
        assert self.members.live == {"me", *self.seen}

    @invariant()
    def version_changes_exactly_with_the_live_set(self) -> None:
        live, version = self.members.live, self.members.version
        assert (version != self.versions[-1]) == (live != self.lives[-1])
        self.versions.append(version)
        self.lives.append(live)


TestMembershipModel = MembershipModel.TestCase
