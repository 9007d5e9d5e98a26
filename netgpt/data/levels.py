"""The influence level rule: the one place that turns final counts into a level 0-9.

The released data ships its label (`影响力等级`) and the importer keeps it as it is; this rule is what the
synthetic generator labels with. The authors did not publish it; this is the step function that the released
records fit (docs/data.md): M = max(likes, shares, collects, comment count) at the final state, on every
platform (fans and views never count), and the level is how many of the platform's cut points M reaches.
Douyin's cut points of levels 1..9 are 1, 10, 20, 80, 300, 1k, 3k, 10k, 50k; the other platforms' are
Douyin's times a scale, kept exact (not rounded one by one), so that two cuts may fall between the same two
integers and a level be skipped:

- Bilibili, scale 1/15: cuts 1/15, 2/3, 4/3, 16/3, 20, 200/3, 200, 2000/3, 10000/3. It reproduces every
  pair read off real Bilibili records: M = 1 -> 2, 2-4 -> 3, 13-19 -> 4, 20-22 -> 5, 76-83 -> 6,
  1,145 -> 8 (level 1 cannot occur there: one like already reaches level 2). Only scales in
  (0.0633, 0.0667] fit them all.
- Xigua, scale 1/8 (the released label on about 90 % of the real Xigua videos read; 95 % on Douyin).
- Kuaishou and Toutiao were not measured: they use Douyin's cuts (scale 1).
"""

from __future__ import annotations

import bisect
import math
from fractions import Fraction

DOUYIN_CUTS = (1, 10, 20, 80, 300, 1_000, 3_000, 10_000, 50_000)
"""M at which levels 1..9 start on Douyin (and, by assumption, Kuaishou and Toutiao)."""

CUT_SCALE = {
    "抖音": Fraction(1),
    "快手": Fraction(1),
    "西瓜": Fraction(1, 8),
    "头条": Fraction(1),
    "哔哩哔哩": Fraction(1, 15),
}
"""Each platform's cut points as an exact fraction of Douyin's."""


def _integer_cuts(scale: Fraction) -> tuple[int, ...]:
    """The least integer M reaching each of Douyin's cuts times `scale` (non-decreasing; equal when a level
    is skipped). Exact fractions: 300 / 15 is 20, where floats could land a hair above it."""
    return tuple(math.ceil(cut * scale) for cut in DOUYIN_CUTS)


PLATFORM_CUTS = {platform: _integer_cuts(scale) for platform, scale in CUT_SCALE.items()}
"""Per platform, the least M of each level 1..9: level = how many of them M reaches."""


def influence_level(platform: str, likes: int, shares: int, collects: int, comment_count: int) -> int:
    """The level 0-9 of a video from its final-state counts (fans and views never count)."""
    if platform not in PLATFORM_CUTS:
        raise ValueError(f"platform {platform!r}: expected one of {sorted(PLATFORM_CUTS)}")
    return bisect.bisect_right(PLATFORM_CUTS[platform], max(likes, shares, collects, comment_count))
