"""Images -> pairs -> numpy batches; no JAX, no devices.

``sources.py`` decodes every source into ``ImagePairs`` (``cache.py`` keeps them on disk),
``benchmarks.py`` loads the benchmark sets as :class:`~edsr_jax.data.benchmarks.Sample` lists, and
``pipeline.py`` draws the training batches.
"""
