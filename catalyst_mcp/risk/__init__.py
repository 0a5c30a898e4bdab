"""Pre-trade risk: frozen limits, one pure function per rule, evaluate() over a snapshot."""
