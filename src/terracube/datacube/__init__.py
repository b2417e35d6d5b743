"""The cube model: raster cubes and their dimension roles, labeled arrays, vector cubes,
the pixel grid and lazy warping. The bottom floor: it imports nothing else of terracube
but the ground-floor errors."""
