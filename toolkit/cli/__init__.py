"""The console scripts `predict` and `manage`; they need only the client extras (no torch, no TorchServe)."""
