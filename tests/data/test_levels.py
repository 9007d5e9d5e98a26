import pytest

from netgpt.data.levels import DOUYIN_CUTS, PLATFORM_CUTS, influence_level


def level(platform: str, likes=0, shares=0, collects=0, comment_count=0) -> int:
    return influence_level(platform, likes, shares, collects, comment_count)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (0, 0),
        (1, 1),
        (9, 1),
        (10, 2),
        (19, 2),
        (20, 3),
        (79, 3),
        (80, 4),
        (299, 4),
        (300, 5),
        (999, 5),
        (1000, 6),
        (2999, 6),
        (3000, 7),
        (9999, 7),
        (10_000, 8),
        (49_999, 8),
        (50_000, 9),
        (10**9, 9),
    ],
)
def test_douyin_cut_points(m, expected):
    assert level("抖音", likes=m) == expected


def test_level_is_the_max_of_engagement_counts_fans_and_views_never_count():
    assert level("抖音", likes=5, shares=85, collects=3, comment_count=12) == 4  # shares lead
    assert level("快手", comment_count=300) == 5
    assert level("哔哩哔哩", collects=21) == 5


@pytest.mark.parametrize(
    ("m", "expected"),
    [(1, 2), (2, 3), (4, 3), (13, 4), (19, 4), (20, 5), (22, 5), (76, 6), (83, 6), (1145, 8)],
)
def test_bilibili_levels_match_the_released_labels(m, expected):
    """(M, level) pairs read off real Bilibili records: M of the four counts, views not counted."""
    assert level("哔哩哔哩", likes=m) == expected


def test_platform_cuts_are_douyins_scaled_exactly_and_may_skip_a_level():
    assert PLATFORM_CUTS["抖音"] == DOUYIN_CUTS == PLATFORM_CUTS["快手"] == PLATFORM_CUTS["头条"]
    assert PLATFORM_CUTS["西瓜"] == (1, 2, 3, 10, 38, 125, 375, 1250, 6250)
    assert PLATFORM_CUTS["哔哩哔哩"] == (1, 1, 2, 6, 20, 67, 200, 667, 3334)
    for cuts in PLATFORM_CUTS.values():
        assert all(a <= b for a, b in zip(cuts, cuts[1:], strict=False))
    assert level("西瓜", likes=10) == 4 and level("西瓜", likes=9) == 3
    assert level("哔哩哔哩", likes=0) == 0 and level("哔哩哔哩", likes=1) == 2  # level 1 skipped


def test_unknown_platform_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'YouTube'"):
        level("YouTube", likes=1)
