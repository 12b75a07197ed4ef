#!/usr/bin/env python3
"""A tree for timing backstop-sweep against find, made without the project's code.

usage: sweep_tree.py ROOT ORDER SHAPE [FILES]
  ORDER: dirs (directory by directory, as a shell loop fills them), rr (round robin),
         random (every file in a shuffled order, seed 7)
  SHAPE: flat (2 000 directories under ROOT) or deep (10 x 10 x 20 directories, three
         levels, the files in the 2 000 leaves)
FILES files of 100 bytes (default 200 000); every other file is two days old, the rest
one hour old (mtime and atime).
"""
import os
import random
import sys
import time

root, order, shape = sys.argv[1], sys.argv[2], sys.argv[3]
files = int(sys.argv[4]) if len(sys.argv) > 4 else 200_000
DIRS = 2000
if shape == "flat":
    dirs = [os.path.join(root, "d%05d" % d) for d in range(DIRS)]
elif shape == "deep":
    dirs = [
        os.path.join(root, "a%02d" % a, "b%02d" % b, "c%02d" % c)
        for a in range(10)
        for b in range(10)
        for c in range(20)
    ]
else:
    sys.exit("SHAPE is flat or deep")
for d in dirs:
    os.makedirs(d, exist_ok=True)
pairs = [(f % DIRS, f) for f in range(files)]
if order == "dirs":
    pairs.sort()
elif order == "random":
    random.Random(7).shuffle(pairs)
elif order != "rr":
    sys.exit("ORDER is dirs, rr or random")
now = time.time()
old, young = now - 2 * 86400, now - 3600
data = b"x" * 100
for d, f in pairs:
    path = os.path.join(dirs[d], "f%07d" % f)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    os.close(fd)
    t = old if f % 2 == 0 else young
    os.utime(path, (t, t))
os.sync()
