"""Secondary web services: XYZ map tiles rendered lazily from a process graph."""
