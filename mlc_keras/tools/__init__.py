"""Developer tools beside the product (benchmarks); nothing in the package imports tools."""
