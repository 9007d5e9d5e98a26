"""Distributed training: Ray Train workers running NetGPT on DeepSpeed (ZeRO-3) through the curriculum.

`netgpt.train.run.train(config)` is the one entry (used by `netgpt train`, `ray_jobs/train.py`, the demo).
"""
