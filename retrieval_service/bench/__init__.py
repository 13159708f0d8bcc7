"""`serendip bench retrieval`: the real service under closed-loop load, against an empty handler."""
