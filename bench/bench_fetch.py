"""How fast a recognize worker gets its batch of line crops from S3: one request at a time
against `storage.get_many`'s threads.

Usage: python bench/bench_fetch.py [--crops 256] [--threads 1,4,16] [--latency-ms 0,20]

The server is moto's (ThreadedMotoServer on loopback), which answers in Python on the same 2
cores, so with no added latency it measures moto more than Quire. A remote S3 adds a round trip
to every request: --latency-ms waits that long before each request is sent (a botocore hook;
a sleep, as a network wait, holds no core), which is the part threads overlap.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_trim import synthetic_samples
from bench.timing import fastest
from pipeline.process import encode_png
from pipeline.storage import S3Store, get_many, put_many


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crops", type=int, default=256)
    p.add_argument("--threads", default="1,4,16")
    p.add_argument("--latency-ms", default="0,20")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(name, "bench")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="quire-bench")
        store = S3Store("quire-bench", endpoint_url=endpoint)
        crops = [encode_png(s.image) for s in synthetic_samples(args.crops, 32, 1024, seed=11)]
        keys = [f"lines/{i:05d}.png" for i in range(len(crops))]
        put_many(store, list(zip(keys, crops)), content_type="image/png")
        print(f"{len(keys)} line crops ({sum(map(len, crops)) // len(crops)} bytes each on average), "
              f"moto on {endpoint}, best of {args.repeat}")
        print(f"{'latency ms':>10} {'threads':>7} {'ms/crop':>8} {'crops/s':>8}")
        delay = 0.0
        store.client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(delay))
        for latency in (float(x) for x in args.latency_ms.split(",")):
            delay = latency / 1000
            for threads in (int(x) for x in args.threads.split(",")):
                seconds, got = fastest(partial(get_many, store, keys, threads), args.repeat)
                assert got == crops, "a crop came back wrong"
                print(f"{latency:>10.0f} {threads:>7} {1000 * seconds / len(keys):>8.2f} "
                      f"{len(keys) / seconds:>8.0f}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
