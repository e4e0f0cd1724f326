"""Allocation-heavy, deterministic workload for the LD_PRELOAD test.

Builds and tears down dicts, lists, strings, bytes and bytearrays of varied
sizes (a few bytes up to several MB), grows buffers by appending (realloc),
sorts, joins and slices, then prints checksums that only depend on the
computation. The output must be identical under glibc and under hakmem.
"""
import hashlib
import random
import sys
import zlib

rng = random.Random(12345)
h = hashlib.sha256()
crc = 0


def feed(b):
    global crc
    h.update(b)
    crc = zlib.crc32(b, crc)


# 1. many small dicts and lists, built and destroyed in waves
total = 0
for wave in range(30):
    objs = []
    for i in range(4000):
        d = {"k%d" % j: [j] * (j % 7) for j in range(rng.randrange(1, 12))}
        d["s"] = "x" * rng.randrange(0, 300)
        objs.append(d)
    # drop a random half, keep the rest alive into the next step
    rng.shuffle(objs)
    keep = objs[: len(objs) // 2]
    for d in keep:
        total += len(d) + len(d["s"])
    del objs
    feed(str(total).encode())
print("dicts", total)

# 2. strings of many sizes, joined and hashed
parts = []
for i in range(20000):
    n = rng.choice((1, 7, 16, 33, 100, 257, 1000, 4097, 20000))
    parts.append(chr(97 + i % 26) * n)
big = "|".join(parts)
feed(big.encode())
print("strings", len(parts), len(big))
del parts, big

# 3. bytearrays grown by appending (realloc), up to several MB
bufs = []
for i in range(12):
    b = bytearray()
    target = rng.randrange(1 << 16, 6 << 20)
    chunk = bytes(range(256)) * rng.randrange(1, 64)
    while len(b) < target:
        b += chunk
        if len(b) % 3 == 0:
            b.extend(b"\x01\x02\x03")
    del b[target:]
    feed(bytes(b[:: max(1, len(b) // 4096)]))
    bufs.append(b)
print("bytearrays", sum(len(b) for b in bufs))
# shrink them (realloc down) and check contents survive
for b in bufs:
    keep = len(b) // 7
    head = bytes(b[:64])
    del b[keep:]
    assert bytes(b[:64]) == head[: min(64, keep)]
    feed(bytes(b[-32:]))
del bufs

# 4. large bytes objects of MB size, sliced and concatenated
blobs = [bytes([i % 251]) * rng.randrange(1 << 20, 8 << 20) for i in range(8)]
cat = b"".join(blob[: 1 << 18] for blob in blobs)
feed(cat)
print("blobs", sum(len(b) for b in blobs), len(cat))
del blobs, cat

# 5. a dict of lists that churns (insert/delete), then sorted output
table = {}
for i in range(150000):
    k = rng.randrange(20000)
    if rng.random() < 0.6:
        table.setdefault(k, []).append(i)
    else:
        table.pop(k, None)
items = sorted((k, len(v), sum(v)) for k, v in table.items())
feed(repr(items[:1000]).encode())
print("table", len(table), sum(n for _, n, _ in items))

# 6. list of tuples sorted by key (lots of small temporaries)
rows = [(rng.random(), "r%06d" % i, i * 3) for i in range(200000)]
rows.sort()
feed("".join(r[1] for r in rows[:5000]).encode())
print("rows", len(rows), rows[0][1], rows[-1][1])
del rows

print("crc32 %08x" % crc)
print("sha256", h.hexdigest())
sys.exit(0)
