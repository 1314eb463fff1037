"""Training loops: supervised (more recipes come with the methods that need them)."""
