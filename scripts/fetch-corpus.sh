#!/bin/sh
# Writes the bundled corpus, the King James Bible (Debian package bible-kjv), as plain prose to
# data/corpus/kjv.txt and prints its path. Idempotent: an existing file over 1 MB is kept.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/data/corpus/kjv.txt"

if [ -f "$out" ] && [ "$(wc -c <"$out")" -gt 1000000 ]; then
    echo "$out"
    exit 0
fi

if ! command -v bible >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y bible-kjv >/dev/null
    else
        echo "fetch-corpus: 'bible' not found; install the bible-kjv package (apt-get install bible-kjv)" >&2
        exit 1
    fi
fi

mkdir -p "$(dirname "$out")"
# Each line starts with a verse reference ("Ge1:1 "); strip it so the text is plain prose.
# Write to a temporary file first so an interrupted run never leaves a short corpus behind.
bible -f "Gen1:1-Rev22:21" | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' >"$out.tmp"
size=$(wc -c <"$out.tmp")
if [ "$size" -le 1000000 ]; then
    rm -f "$out.tmp"
    echo "fetch-corpus: 'bible' produced only $size bytes" >&2
    exit 1
fi
mv "$out.tmp" "$out"
echo "$out"
