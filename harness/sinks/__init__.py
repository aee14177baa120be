"""Where a trial's metrics go. Each sink is a peer with the same three calls."""
