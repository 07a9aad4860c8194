"""BGP guard: feeds -> normalised updates -> detectors -> alert events -> sinks."""
