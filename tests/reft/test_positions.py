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


def test_all_positions_edit_every_real_token_and_no_pad_whatever_the_padding_side():
    from reft_core.config import parse_positions
    from reft_core.positions import edited_cells

    assert parse_positions("all") is None and parse_positions("f3+l1") == (3, 1)
    for mask in ([[1, 1, 1, 0], [1, 0, 0, 0]], [[0, 1, 1, 1], [0, 0, 0, 1]]):
        rows, cols = edited_cells(torch.tensor(mask), None)
        expected = [(r, c) for r, row in enumerate(mask) for c, m in enumerate(row) if m]
        assert sorted(zip(rows.tolist(), cols.tolist())) == expected
    rows, cols = edited_cells(torch.tensor([[1, 1, 1, 0]]), (1, 1))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (0, 2)]
