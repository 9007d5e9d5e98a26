"""The split (docs/data.md#the-split), on whole videos so that no video straddles two splits.

- `final`: each video's final state (its latest crawl; on a tie, the highest sample id). It reveals the label,
  so it is in no split, but it stays in the graph.
- `test`: the other states of videos posted after `split_date`.
- `val`: the other states of videos posted in the last `val_days` days up to and including `split_date`.
- `train`: the other states of videos posted on or before `split_date - val_days`.
A video's post date is the date of its earliest `post_time` over its states.
"""

from __future__ import annotations

from datetime import date

import numpy as np

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def epoch_day(day: str) -> int:
    """Days since 1970-01-01 of a `YYYY-MM-DD` date."""
    return date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL


def final_states(video_codes: np.ndarray, crawl_days: np.ndarray, sample_ids: np.ndarray) -> np.ndarray:
    """True on each video's last state: its latest crawl date, then its highest sample id."""
    order = np.lexsort((sample_ids, crawl_days, video_codes))
    last_of_video = np.ones(len(order), dtype=bool)
    last_of_video[:-1] = video_codes[order[1:]] != video_codes[order[:-1]]
    is_final = np.zeros(len(order), dtype=bool)
    is_final[order[last_of_video]] = True
    return is_final


def video_post_days(video_codes: np.ndarray, post_days: np.ndarray) -> np.ndarray:
    """Per row, the earliest post day over all rows of the same video."""
    earliest = np.full(int(video_codes.max(initial=-1)) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(earliest, video_codes, post_days)
    return earliest[video_codes]


def assign_splits(
    video_post_day: np.ndarray, is_final: np.ndarray, split_date: str, val_days: int
) -> np.ndarray:
    """The split name of each row (one of `SPLITS`), from its video's post day (days since epoch)."""
    last_train_day = epoch_day(split_date)
    split = np.where(video_post_day > last_train_day, "test", "train").astype(object)
    split[(video_post_day <= last_train_day) & (video_post_day > last_train_day - val_days)] = "val"
    split[is_final] = "final"
    return split
