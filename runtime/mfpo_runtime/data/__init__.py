"""Datasets: formats, the synthetic scenes world, keywords, grounding, region noise, semantic entropy."""
