"""Input and output around the algorithm: video read/write, latent previews, progress and
cancel callbacks."""
