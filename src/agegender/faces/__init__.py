"""Face analysis: detection and alignment to the canonical crop."""
