"""Evaluation: point tracking (offline OpenCV Lucas-Kanade, optional CoTracker) and the paper's
Motion-Fidelity score."""
