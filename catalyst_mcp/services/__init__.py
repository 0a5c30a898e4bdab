"""Use-cases that combine the ports inside transactions."""
