"""Training Quire's line model: synthetic lines, the fine-tuning loop and CER/WER evaluation."""
