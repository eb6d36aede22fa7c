#!/usr/bin/env python3
"""Whether two builds hold the same GPU machine code: every kernel's SASS (cuobjdump -sass of
each CUDA object under BUILD/CMakeFiles), per architecture and kernel name, compared between the
two builds. File moves change only the names nvcc gives internal-linkage symbols and anonymous
namespaces (the source file's name and a hash of its path: 45_GLOBAL__N__<hash>_12_attention_cu_
<hash>), so those are written as _INTERNAL_ / _GLOBAL__N_ first.
  scripts/same-sass.py BUILD_BEFORE BUILD_AFTER       exit 0 when identical, 1 otherwise."""
import pathlib
import re
import subprocess
import sys

INTERNAL = re.compile(r"\d*(_INTERNAL_|_GLOBAL__N__)[0-9a-f]{8}_\d+_\w+?_cu_[0-9a-f]{8}")


def kernels(build):
    """{(arch, kernel): sass} over every CUDA object of the build."""
    out = {}
    for obj in sorted(pathlib.Path(build, "CMakeFiles").rglob("*.cu.o")):
        text = subprocess.run(["cuobjdump", "-sass", str(obj)], capture_output=True, text=True, check=True).stdout
        arch, name, body = None, None, []
        for line in INTERNAL.sub(lambda m: m.group(1), text).splitlines():
            if m := re.match(r"\s*arch = (\w+)", line):
                arch = m.group(1)
            elif m := re.match(r"\s*Function : (\S+)", line):
                if name:
                    out[(arch, name)] = "\n".join(body)
                name, body = m.group(1), []
            elif name and line.strip() and "....." not in line:
                body.append(line.strip())
        if name:
            out[(arch, name)] = "\n".join(body)
    return out


def main():
    before, after = kernels(sys.argv[1]), kernels(sys.argv[2])
    only_before = sorted(set(before) - set(after))
    only_after = sorted(set(after) - set(before))
    differ = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    print(f"same-sass: {len(before)} kernels before, {len(after)} after; {len(differ)} differ, "
          f"{len(only_before)} only before, {len(only_after)} only after")
    for k in (differ + only_before + only_after)[:20]:
        print("  ", *k)
    return 0 if before and not (differ or only_before or only_after) else 1


if __name__ == "__main__":
    sys.exit(main())
