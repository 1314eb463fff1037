"""The active learning steps, one module each: seed, score, select, label, round.

Each step reads files of round N and writes files of round N (or creates round N + 1); each
skips what already exists unless forced, so an interrupted step is simply run again.
"""
