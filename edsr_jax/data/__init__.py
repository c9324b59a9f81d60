"""Images -> pairs -> numpy batches (sources, cache, benchmarks, pipeline); no JAX, no devices."""
