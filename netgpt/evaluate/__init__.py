"""After training: rating batches (`rate`), scoring them (`scoring`, `baselines`), `netgpt evaluate` over a
split of the store (`run`) and `netgpt predict` for new videos (`predict`)."""
