"""Hand-written fakes that speak real protocols (an emulator of Alpaca's REST API)."""
