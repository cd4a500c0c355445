"""Stage 1 of the data path: raw API objects -> one canonical snapshot with one digest.

    keys          an object's identity, (group, kind, namespace, name)
    profile       what a named, versioned profile drops before hashing (data in profiles/)
    canonicalize  one raw object -> canonical msgpack bytes and their digest
    snapshot      canonical objects by key + a header; the snapshot digest

Invariants: the same meaning gives the same bytes and the same digest on every machine; the
header (time, environment, per-kind errors) is never part of the digest; nothing here does I/O
beyond reading the built-in profiles.
"""
