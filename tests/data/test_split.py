import numpy as np

from netgpt.data.split import assign_splits, epoch_day, final_states, video_post_days


def test_final_state_is_the_latest_crawl_of_each_video_ties_by_sample_id():
    videos = np.array([0, 0, 0, 1, 1, 2])
    crawl = np.array([10, 14, 12, 5, 5, 7])
    ids = np.array([0, 1, 2, 3, 4, 5])
    assert final_states(videos, crawl, ids).tolist() == [False, True, False, False, True, True]


def test_video_post_day_is_its_earliest_over_states():
    assert video_post_days(np.array([1, 0, 1]), np.array([9, 4, 7])).tolist() == [7, 4, 7]


def test_split_rule_train_val_test_and_final_excluded():
    split_date = "2024-12-20"
    last = epoch_day(split_date)
    post = np.array([last - 10, last - 3, last - 2, last, last + 1, last, last - 10])
    final = np.array([False, False, False, False, False, True, True])
    split = assign_splits(post, final, split_date, val_days=3).tolist()
    # posted on/before the split date train; the last 3 days of that period (12-18..12-20) are val;
    # later ones test; final states go to no split whatever their date
    assert split == ["train", "train", "val", "val", "test", "final", "final"]


def test_val_days_zero_leaves_no_validation_slice():
    last = epoch_day("2024-12-20")
    split = assign_splits(np.array([last, last + 1]), np.array([False, False]), "2024-12-20", 0)
    assert split.tolist() == ["train", "test"]
