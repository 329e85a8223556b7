"""What every part of vla-shards shares: the errors a user can fix, and reading small files."""
