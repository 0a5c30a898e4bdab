"""Value types, the cycle/phase state machine and the error taxonomy. No I/O."""
