"""Host side: the driver loader and the rt-engine detection engine."""
