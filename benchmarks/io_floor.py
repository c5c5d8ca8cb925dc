"""The I/O floor of a merge: read every input file once and write an output of the same size as θ0.

Run as its own process so its wall time is comparable with `lines merge` and `mergekit-yaml`:
    python io_floor.py OUT_FILE BASE_DIR POLICY_DIR...
"""
import os
import sys
import time

CHUNK = 64 << 20


def main(out_file: str, base: str, *policies: str) -> None:
    start = time.perf_counter()
    buffer = memoryview(bytearray(CHUNK))
    with open(out_file, "wb", buffering=0) as out:
        for directory in (base, *policies):
            for name in sorted(os.listdir(directory)):
                if not name.endswith(".safetensors"):
                    continue
                with open(os.path.join(directory, name), "rb", buffering=0) as f:
                    while n := f.readinto(buffer):
                        if directory == base:  # the output is as large as θ0
                            out.write(buffer[:n])
    print(f"{time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
