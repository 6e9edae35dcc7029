from __future__ import annotations

import random

import pytest

from dev_sessions import ids


def test_allocate_gives_champion_and_role() -> None:
    sid = ids.allocate(set(), random.Random(1))
    champion, role = sid.rsplit("-", 1)
    assert champion in ids.CHAMPIONS
    assert role in ids.ROLES
    assert ids.is_valid(sid)


def test_allocate_never_returns_an_id_in_use() -> None:
    rng = random.Random(7)
    taken: set[str] = set()
    for _ in range(300):
        sid = ids.allocate(taken, rng)
        assert sid not in taken
        taken.add(sid)


def test_allocate_finds_the_last_free_id() -> None:
    everything = {f"{c}-{r}" for c in ids.CHAMPIONS for r in ids.ROLES}
    last = "zyra-sup"
    assert ids.allocate(everything - {last}, random.Random(3)) == last


def test_allocate_says_when_all_ids_are_used() -> None:
    everything = {f"{c}-{r}" for c in ids.CHAMPIONS for r in ids.ROLES}
    with pytest.raises(ids.IdsExhausted, match="kill some sessions"):
        ids.allocate(everything)


def test_champion_names_have_no_hyphen_and_no_duplicates() -> None:
    assert len(set(ids.CHAMPIONS)) == len(ids.CHAMPIONS)
    assert all("-" not in c and c.isalnum() and c.islower() for c in ids.CHAMPIONS)


@pytest.mark.parametrize("value", ["", "Fizz-top", "fizz top", "-x", "../etc", "a" * 65, "fizz;rm"])
def test_invalid_ids_are_refused(value: str) -> None:
    assert not ids.is_valid(value)


def test_tmux_names_round_trip() -> None:
    assert ids.tmux_name("fizz-top") == "dev-fizz-top"
    assert ids.from_tmux_name("dev-fizz-top") == "fizz-top"
    assert ids.from_tmux_name("other") is None
    assert ids.from_tmux_name("dev-") is None
