"""The benchmark: every arm on the same split, steps and seeds, beside references, with paired tests."""
