"""The influence level rule: the one place that turns final counts into a level 0-9.

The released data ships its label (`影响力等级`) and the importer keeps it as it is; this rule is what the
synthetic generator labels with. It is the step function SPEC §2 infers from ~900 released videos (a
hypothesis, not the authors' published rule): the level counts how many cut points
M = max(likes, shares, collects, comment count) at the final state reaches; fans never count, and on
Bilibili views count too. Level 0 means M = 0. Douyin's cuts are 1, 10, 20, 80, 300, 1k, 3k, 10k, 50k;
Xigua's are ~1/8 of those and Bilibili's ~1/15. Kuaishou and Toutiao were not measured: they use Douyin's.
"""

from __future__ import annotations

import bisect
import math

DOUYIN_CUTS = (1, 10, 20, 80, 300, 1_000, 3_000, 10_000, 50_000)
"""M at which levels 1..9 start on Douyin (and, by assumption, Kuaishou and Toutiao)."""

CUT_SCALE = {"抖音": 1.0, "快手": 1.0, "西瓜": 1 / 8, "头条": 1.0, "哔哩哔哩": 1 / 15}
"""Each platform's cut points as a fraction of Douyin's."""

VIEWS_COUNT = frozenset({"哔哩哔哩"})
"""Platforms whose views enter M."""


def _scaled_cuts(scale: float) -> tuple[int, ...]:
    """Douyin's cuts times `scale`, rounded, kept strictly increasing, the first one staying at 1 (M > 0)."""
    cuts = [1]
    for cut in DOUYIN_CUTS[1:]:
        cuts.append(max(cuts[-1] + 1, math.ceil(cut * scale)))
    return tuple(cuts)


PLATFORM_CUTS = {platform: _scaled_cuts(scale) for platform, scale in CUT_SCALE.items()}
"""Cut points of levels 1..9 per platform: level = how many of them M reaches."""


def engagement(platform: str, likes: int, shares: int, collects: int, comment_count: int, views: int) -> int:
    """M of the level rule: the largest engagement count the platform shows (views only where they count)."""
    largest = max(likes, shares, collects, comment_count)
    return max(largest, views) if platform in VIEWS_COUNT else largest


def influence_level(
    platform: str, likes: int, shares: int, collects: int, comment_count: int, views: int
) -> int:
    """The level 0-9 of a video from its final-state counts (fans are not counted)."""
    if platform not in PLATFORM_CUTS:
        raise ValueError(f"platform {platform!r}: expected one of {sorted(PLATFORM_CUTS)}")
    m = engagement(platform, likes, shares, collects, comment_count, views)
    return bisect.bisect_right(PLATFORM_CUTS[platform], m)
