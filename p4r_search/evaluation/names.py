"""The names of `p4r eval loo`'s candidate generators, without importing any of them (the CLI reads these)."""

GENERATOR_KINDS = ("popularity", "bpr", "als", "ease", "rp3beta", "itemknn", "sasrec")
DEFAULT_GENERATORS = GENERATOR_KINDS

# --hard-negatives: the strongest generator on validation, whichever it is
STRONGEST = "strongest"
