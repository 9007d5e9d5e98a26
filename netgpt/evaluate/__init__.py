"""Rating videos with a trained NetGPT: `rate.rate_batch` (one sampled batch), `predict` (new samples)."""
