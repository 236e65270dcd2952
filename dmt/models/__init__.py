"""Model side of the library: loading ZeroScope from diffusers folders or the hub (with
fingerprints), the tiny random models used by tests and demos, prompt encoding, VAE
encode/decode of frames, UNet call helpers and memory helpers (checkpointing, offloading)."""
