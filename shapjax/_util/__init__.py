"""Private helpers shared by every layer (input checks, model splitting, chunked maps, file writing).

Nothing here is public API; the names may change without notice.
"""
