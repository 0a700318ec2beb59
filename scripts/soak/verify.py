#!/usr/bin/env python3
"""Soak test verdict: the journal, the file sink and the object-store sink must
hold every emulator id exactly once; HEC must have received each at least once."""
import collections, glob, gzip, json, sqlite3, sys, urllib.request

emulator, data_dir, file_dir, hec_ids, s3_endpoint, bucket = sys.argv[1:7]
want = set(json.load(urllib.request.urlopen(emulator + "/_mock/ids")))


def verdict(name, counts, exactly_once):
    missing = len(want - set(counts))
    doubled = sum(1 for c in counts.values() if c > 1)
    extra = len(set(counts) - want)
    ok = missing == 0 and extra == 0 and (doubled == 0 or not exactly_once)
    promise = "exactly once" if exactly_once else "at least once"
    print(f"{name:<14} {len(counts):>9} {missing:>8} {doubled:>9} {extra:>6}   {promise:<13} {'OK' if ok else 'FAIL'}")
    return ok


db = sqlite3.connect(f"file:{data_dir}/journal.db?mode=ro", uri=True)
journal = collections.Counter(r[0] for r in db.execute("SELECT id FROM events"))
files = collections.Counter()
for path in glob.glob(f"{file_dir}/*.ndjson"):
    for line in open(path):
        files[json.loads(line)["id"]] += 1
hec = collections.Counter(int(l) for l in open(hec_ids) if l.strip())

import boto3  # installed with moto[server]

s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="soak", aws_secret_access_key="soak", region_name="us-east-1")
objects = collections.Counter()
n_objects = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        n_objects += 1
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        for line in body.splitlines():
            objects[json.loads(line)["id"]] += 1

print(f"emulator ids: {len(want)}; objects in the bucket: {n_objects}")
print(f"{'where':<14} {'distinct':>9} {'missing':>8} {'doubled':>9} {'extra':>6}   {'promise':<13} verdict")
ok = all([
    verdict("journal", journal, True),
    verdict("file sink", files, True),
    verdict("object store", objects, True),
    verdict("splunk HEC", hec, False),
])
print(f"HEC deliveries: {sum(hec.values())} for {len(hec)} ids ({sum(hec.values()) - len(hec)} repeats, allowed: at-least-once)")
sys.exit(0 if ok else 1)
