import torch

from reft_core.positions import select_positions


def _cells(mask, first, last):
    rows, cols = select_positions(torch.tensor(mask), first, last)
    return sorted(zip(rows.tolist(), cols.tolist()))


def test_first_and_last_real_tokens_under_right_padding():
    mask = [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]]
    assert _cells(mask, 1, 1) == [(0, 0), (0, 4), (1, 0), (1, 2)]
    assert _cells(mask, 2, 2) == [(0, 0), (0, 1), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]


def test_first_and_last_real_tokens_under_left_padding():
    mask = [[0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1]]
    assert _cells(mask, 1, 1) == [(0, 2), (0, 6), (1, 4), (1, 6)]


def test_row_shorter_than_first_plus_last_gets_each_token_once():
    mask = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 1]]
    assert _cells(mask, 2, 2) == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2), (2, 3)]
    assert _cells(mask, 1, 1) == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 3)]


def test_only_first_or_only_last():
    mask = [[1, 1, 1, 0], [0, 1, 1, 1]]
    assert _cells(mask, 2, 0) == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert _cells(mask, 0, 1) == [(0, 2), (1, 3)]
