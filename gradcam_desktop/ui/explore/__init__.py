"""Exploring one picture: the picture and its map, the strip, the layer tree, the class list, the method and score."""
