"""Sources: thin adapters that turn files, microphones and sockets into float32 chunks."""
