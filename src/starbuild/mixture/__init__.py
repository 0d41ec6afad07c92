"""The training mixture measured in tokens of the trained tokenizer (`mixture` stage, metrics/mixture.json)."""
