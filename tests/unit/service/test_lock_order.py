"""A group of postings that apply accounts now takes its row locks in account order, as a posting alone does
(cell.service.posting_groups.lock_order): no deadlock between groups, or between a group and a posting alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cell.service.posting_groups import lock_order

ACCOUNTS = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(12)]
postings = st.lists(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=4, unique=True).map(sorted),
                    min_size=1, max_size=12)


@given(postings)
def test_a_group_locks_each_row_after_every_row_it_holds(accounts):
    sent, alone = lock_order(accounts)
    assert sorted(sent + alone) == list(range(len(accounts)))  # each posting fits or not, once
    assert sent  # the first in account order always goes
    held: list[str] = []
    for i in sent:
        new = [a for a in accounts[i] if a not in held]
        assert all(a > b for a in new for b in held)
        held += new


@given(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=12))
def test_postings_of_one_account_each_all_go_together_in_account_order(accounts):
    sent, alone = lock_order([[a] for a in accounts])
    assert not alone
    assert [accounts[i] for i in sent] == sorted(accounts)
    assert sent == sorted(sent, key=lambda i: (accounts[i], i))  # one account's postings in arrival order


@given(st.integers(0, len(ACCOUNTS) - 1), st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=12))
def test_postings_through_one_hot_account_fit_but_those_below_it(at, others):
    """Each locks a hot account and one of its own (card payments against one settlement account, sync): all of those
    whose own account sorts after the hot one's fit, with those of the lowest account below it (the group then locks
    its rows first: tests/integration/cell/test_posting_groups.py)."""
    hot = ACCOUNTS[at]
    accounts = [sorted({hot, other}) for other in others]
    _, alone = lock_order(accounts)
    lowest = min((other for other in others if other < hot), default=None)
    assert set(alone) == {i for i, other in enumerate(others) if other < hot and other != lowest}


def test_a_posting_whose_rows_straddle_the_others_does_not_fit():
    a, b, c, d = ACCOUNTS[:4]
    # [a], [a, c] (c after a), then [b]: b would be locked after c. [c, d] joins (c held, d after it).
    assert lock_order([[b], [a, c], [c, d], [a]]) == ([3, 1, 2], [0])
