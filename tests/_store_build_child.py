"""Helper process for tests/test_store.py: runs build_store over a JSON list of utterances.

usage: python _store_build_child.py UTTS_JSON CACHE_DIR CHUNK_SIZE [--workers N] [--sleep S]
       [--hang-at K] [--hang-on NAME] [--log F]

--workers N    decode over N worker processes (spawned: they run this file's top level too, so the
               options below apply in them as well)
--sleep S      sleep S seconds before each decode (keeps the build in flight long enough)
--hang-at K    block forever at this process's K-th decode (0-based)
--hang-on NAME block forever when decoding the file named NAME (in whichever process decodes it)
--log F        append "<pid> <path>" to F for each decode (counts decodes, names the processes)
"""
import argparse
import json
import os
import time

import lightning_ser.audio.io as audio_io
from lightning_ser.audio.store import build_store
from lightning_ser.corpora.base import Utterance


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("utts")
    ap.add_argument("cache_dir")
    ap.add_argument("chunk_size", type=int)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--hang-at", type=int, default=-1)
    ap.add_argument("--hang-on", default=None)
    ap.add_argument("--log", default=None)
    return ap.parse_args()


ARGS = _args()  # module level: spawned workers get the same argv and patch their decoder too
_real = audio_io.load_audio
_calls = [0]


def _slow_load(path, target_sr=audio_io.TARGET_SR):
    if _calls[0] == ARGS.hang_at or os.path.basename(str(path)) == ARGS.hang_on:
        while True:
            time.sleep(1)
    _calls[0] += 1
    time.sleep(ARGS.sleep)
    if ARGS.log:
        with open(ARGS.log, "a") as f:
            f.write(f"{os.getpid()} {path}\n")
    return _real(path, target_sr)


audio_io.load_audio = _slow_load


def main() -> None:
    with open(ARGS.utts) as f:
        utts = [Utterance.from_dict(d) for d in json.load(f)]
    store = build_store(utts, ARGS.cache_dir, chunk_size=ARGS.chunk_size, num_workers=ARGS.workers,
                        progress=False)
    print(store.path)


if __name__ == "__main__":
    main()
