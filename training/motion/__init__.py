"""Data and training of the audio-to-motion network."""
