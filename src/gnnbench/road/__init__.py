"""Road-network accident graphs for eight US states."""
