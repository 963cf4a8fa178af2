"""Helper process for tests/test_store.py: runs build_store over a JSON list of utterances.

usage: python _store_build_child.py UTTS_JSON CACHE_DIR CHUNK_SIZE [--sleep S] [--hang-at K] [--log F]

--sleep S    sleep S seconds before each decode (keeps the build in flight long enough)
--hang-at K  block forever at the K-th decode (0-based): the build can only end by being killed
--log F      append one line per decode to F (counts decodes across processes)
"""
import argparse
import json
import time

import lightning_ser.audio.io as audio_io
from lightning_ser.audio.store import build_store
from lightning_ser.corpora.base import Utterance


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("utts")
    ap.add_argument("cache_dir")
    ap.add_argument("chunk_size", type=int)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--hang-at", type=int, default=-1)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    with open(args.utts) as f:
        utts = [Utterance.from_dict(d) for d in json.load(f)]

    real = audio_io.load_audio
    calls = [0]

    def slow_load(path, target_sr=audio_io.TARGET_SR):
        if calls[0] == args.hang_at:
            while True:
                time.sleep(1)
        calls[0] += 1
        time.sleep(args.sleep)
        if args.log:
            with open(args.log, "a") as f:
                f.write(f"{path}\n")
        return real(path, target_sr)

    audio_io.load_audio = slow_load
    store = build_store(utts, args.cache_dir, chunk_size=args.chunk_size, progress=False)
    print(store.path)


if __name__ == "__main__":
    main()
