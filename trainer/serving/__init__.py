"""Serving a trained policy over HTTP to OpenVLA-OFT's deploy clients (`vla-train serve`)."""
