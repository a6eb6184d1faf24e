"""The cutover flag: rules, Unleash-compatible buckets, monotone rollout, config parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailslot.errors import ConfigError
from mailslot.migrate.flags import Decision, FlagConfig, bucket, evaluate, parse_config

# Unleash's normalizedHash: the values its clients agree on.
# - unleash-client-node src/test/strategy/util.test.ts and unleash-client-java
#   StrategyUtilsTest: normalizedValue("123", "gr1") == 73, normalizedValue("999", "groupX") == 25.
# - Unleash/client-specification specifications/10-flexible-rollout-strategy.json:
#   groupId "Feature.flexibleRollout.10" at 10%: "174" enabled, "499" disabled;
#   "Feature.flexibleRollout.userId.55" at 55%: "25" enabled;
#   "Feature.flexibleRollout.sessionId.42" at 42%: "147" enabled.


def test_buckets_match_unleash_clients() -> None:
    assert bucket("gr1", "123") == 73
    assert bucket("groupX", "999") == 25


@pytest.mark.parametrize(
    ("group", "key", "rollout", "expected"),
    [
        ("Feature.flexibleRollout.10", "174", 10, "actor"),
        ("Feature.flexibleRollout.10", "499", 10, "legacy"),
        ("Feature.flexibleRollout.userId.55", "25", 55, "actor"),
        ("Feature.flexibleRollout.sessionId.42", "147", 42, "actor"),
        ("Feature.flexibleRollout.100", "anything", 100, "actor"),
    ],
)
def test_rollout_matches_the_unleash_specification(
    group: str, key: str, rollout: int, expected: str
) -> None:
    config = FlagConfig(enabled=True, percentage=rollout, group_id=group)
    assert evaluate(config, key).engine == expected


def test_the_specification_vectors_sit_on_the_boundary() -> None:
    # These vectors pin `<=`: the bucket equals the percentage in three of them.
    assert bucket("Feature.flexibleRollout.10", "174") == 10
    assert bucket("Feature.flexibleRollout.userId.55", "25") == 55
    assert bucket("Feature.flexibleRollout.sessionId.42", "147") == 42


@given(
    st.text(max_size=40), st.text(min_size=1, max_size=20), st.integers(0, 100), st.integers(0, 100)
)
def test_rollout_is_monotone_in_the_percentage(doc: str, group: str, low: int, high: int) -> None:
    low, high = sorted((low, high))
    at_low = evaluate(FlagConfig(enabled=True, percentage=low, group_id=group), doc)
    at_high = evaluate(FlagConfig(enabled=True, percentage=high, group_id=group), doc)
    if at_low.engine == "actor":
        assert at_high.engine == "actor"
    assert 1 <= (at_low.bucket or 0) <= 100


@given(st.text(max_size=40))
def test_zero_is_nobody_and_a_hundred_is_everybody(doc: str) -> None:
    assert evaluate(FlagConfig(enabled=True, percentage=0), doc).engine == "legacy"
    assert evaluate(FlagConfig(enabled=True, percentage=100), doc).engine == "actor"


def test_rollout_spreads_documents_evenly() -> None:
    config = FlagConfig(enabled=True, percentage=30)
    share = sum(evaluate(config, f"doc-{i}").engine == "actor" for i in range(10_000)) / 10_000
    assert 0.28 < share < 0.32


def test_rules_in_order() -> None:
    full = FlagConfig(
        enabled=True,
        percentage=100,
        allow_docs=frozenset({"a", "both"}),
        allow_users=frozenset({"staff"}),
        deny_docs=frozenset({"bad", "both"}),
        deny_users=frozenset({"mallory"}),
    )
    assert evaluate(full, "bad") == Decision("legacy", "deny_doc")
    assert evaluate(full, "both") == Decision("legacy", "deny_doc")  # deny beats allow
    assert evaluate(full, "a", "mallory") == Decision("legacy", "deny_user")
    assert evaluate(full, "a") == Decision("actor", "allow_doc")
    assert evaluate(full, "x", "staff") == Decision("actor", "allow_user")
    assert evaluate(full, "x").reason == "rollout"
    none = FlagConfig(enabled=True, allow_docs=frozenset({"a"}), allow_users=frozenset({"staff"}))
    assert evaluate(none, "a").engine == "actor"
    assert evaluate(none, "x", "staff").engine == "actor"
    assert evaluate(none, "x", "guest") == Decision(
        "legacy", "rollout", bucket("mailslot.engine", "x")
    )


def test_kill_switch_and_disabled_send_everything_back() -> None:
    on = FlagConfig(enabled=True, percentage=100, allow_docs=frozenset({"a"}))
    killed = FlagConfig(enabled=True, kill_switch=True, percentage=100, allow_docs=frozenset({"a"}))
    off = FlagConfig(enabled=False, percentage=100, allow_docs=frozenset({"a"}))
    assert evaluate(on, "a").engine == "actor"
    assert evaluate(killed, "a") == Decision("legacy", "kill_switch")
    assert evaluate(off, "a") == Decision("legacy", "disabled")
    assert evaluate(FlagConfig(), "a").engine == "legacy"  # the default is the old engine


def test_parse_config_from_json_and_mapping() -> None:
    text = '{"enabled": true, "percentage": 25, "allow_docs": ["d1", "d2"], "group_id": "g"}'
    config = parse_config(text)
    assert config == FlagConfig(
        enabled=True, percentage=25, allow_docs=frozenset({"d1", "d2"}), group_id="g"
    )
    assert parse_config(text.encode()) == config
    assert (
        parse_config(
            {"enabled": True, "percentage": 25, "allow_docs": ["d1", "d2"], "group_id": "g"}
        )
        == config
    )
    assert parse_config({}) == FlagConfig()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{"percentage": 101}', r"\$\.percentage"),
        ('{"percentage": -1}', r"\$\.percentage"),
        ('{"percentage": "10"}', r"Expected `int`, got `str` - at `\$\.percentage`"),
        ('{"enabled": true, "precentage": 10}', "precentage"),
        ('{"group_id": ""}', r"\$\.group_id"),
        ('{"allow_docs": "d1"}', r"\$\.allow_docs"),
        ("[1, 2]", "Expected `object`"),
        ('{"enabled": tru', "not valid JSON"),
        ({"kill_switch": "yes"}, r"\$\.kill_switch"),
        (["enabled"], "must be a JSON object"),
    ],
)
def test_bad_config_is_a_clear_config_error(source: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(source)  # type: ignore[arg-type]


def test_a_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FlagConfig().percentage = 5  # type: ignore[misc]
