"""Data for toonlab: built-in synthetic portraits, image folders, edge smoothing, downloads."""
