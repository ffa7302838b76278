"""Training callbacks: configuration logging, replica checks (evaluation and sample grids join later)."""
