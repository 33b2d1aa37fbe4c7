"""Rate limits exact per node: GCRA over a table in memory shared by the workers."""
