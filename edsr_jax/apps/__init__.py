"""Features built on the core (the demo, upscaling image files); nothing in the core imports them."""
