"""Features built on the core: the embedded demo and upscaling image files. Nothing in the core
imports this folder."""
