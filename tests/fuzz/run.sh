#!/usr/bin/env bash
# Makes a valid seed per reader with the sanitized mics (a deck, a token shard, an llm.c model file, a
# checkpoint of a 2-step run: its index and a rank file), then fuzzes each reader for SECONDS
# (FUZZ_TARGETS: a subset). Usage: tests/fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail
build=$(cd "$1" && pwd); seconds=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
work="$build/fuzz"
rm -rf "$work"; mkdir -p "$work/seeds"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 OMP_NUM_THREADS=1
cd "$work"
"$build/mics" data synth data --tokens 20000 --seed 3 >/dev/null
"$build/mics" train --deck "$src/inputs/tiny.ini" --train.steps=2 --train.val_every=0 --data.train='data/train_*.bin' \
    --checkpoint.every_steps=2 --checkpoint.dir=ck --run.name=seed --train.save_final=seeds/model.bin \
    --log.level=warning >/dev/null
cp "$src/inputs/tiny.ini" seeds/deck.ini
cp "$(ls data/train_*.bin | head -1)" seeds/shard.bin
cp ck/seed/step_2/state.h5 seeds/state.h5
cp ck/seed/step_2/shard_00000.h5 seeds/piece.h5
status=0
targets=${FUZZ_TARGETS:-deck shard llmc checkpoint piece}
declare -A seed_of=([deck]=seeds/deck.ini [shard]=seeds/shard.bin [llmc]=seeds/model.bin [checkpoint]=seeds/state.h5
                    [piece]=seeds/piece.h5)
for name in $targets; do
  seed=${seed_of[$name]}
  # The checkpoint targets mutate one file of a checkpoint: the others lie beside it, intact.
  if [[ $name == checkpoint || $name == piece ]]; then mkdir -p "$work/$name"; cp ck/seed/step_2/* "$work/$name/"; fi
  "$build/mics_fuzz" "$name" "$seed" "$seconds" "$work/$name" || status=1
done
exit $status
