"""Stage 2 of the data path: what changed between two snapshots, and applying it.

    jsondiff     RFC 6902 diff of one object (list-aware)
    patch        RFC 6902 applier for one object: copy-on-write, bounded
    diff         Delta between snapshots: removed keys, added objects, operations per change
    exemplars    for an added object, a similar one the receiver already holds
    incremental  applying a delta in the time of what it changes, digest still exact

Invariants: `apply(base, diff(base, new))` has exactly `new`'s digest, checked before anything
is kept; a base is never modified; what applying builds is charged to the caller's bounds.
"""
