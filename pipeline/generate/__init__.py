"""Episode generators: sample episodes in the input layouts, to try the tools and for tests."""
