"""State behind one interface: the Store protocol and its memory, SQLite and Redis backends."""
