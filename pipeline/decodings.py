"""The ways recognition can read a line; here, free of dependencies, so training runs where pydantic is not."""

# 'auto' is what the model's config records (rescore for quire-line-v1); ctc is 2-6x faster.
DECODINGS = ("auto", "attention", "ctc", "rescore")
