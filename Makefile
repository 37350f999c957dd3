# mics: two commands on a fresh machine.
#   make run   installs what is missing, builds, runs the demo job
#   make test  installs what is missing, builds, runs every test
BUILD_DIR ?= build
BUILD_TYPE ?= Release
MICS_CUDA ?= AUTO
CUDA_ARCHITECTURES ?=
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

# Debian 12 packages the build and the tests need (python3-h5py: the tests open a checkpoint's index file
# the way a user does).
DEB_PACKAGES := build-essential cmake libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools \
                libboost-program-options-dev libboost-log-dev nlohmann-json3-dev catch2 libopenblas-dev python3 \
                python3-h5py

.PHONY: all deps deps-run build test run install fuzz test-sanitize bench bench-comm bench-model bench-strategies bench-checkpoint bench-cluster deps-bench-cluster clean distclean deps-slurm

# What `make run` adds: matplotlib for the demo's plot (bench/plot_runs.py). Not a test dependency: the
# plot test is skipped without it, so `make test` installs nothing for a picture.
RUN_PACKAGES := python3-matplotlib

# Slurm and munge for the end-to-end job tests (tests/slurm starts its own two-node cluster).
SLURM_PACKAGES := slurmctld slurmd slurm-client munge

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	    echo "deps: missing packages (run as root: apt-get install $$missing)"; exit 1; \
	else \
	    echo "deps: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMICS_CUDA=$(MICS_CUDA) \
	    $(if $(CUDA_ARCHITECTURES),"-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHITECTURES)")

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

deps-slurm:
	@missing=$$(for p in $(SLURM_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps-slurm: Slurm and munge present"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	    echo "deps-slurm: missing $$missing and no apt-get to install them"; exit 1; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	    echo "deps-slurm: missing packages (run as root: apt-get install $$missing)"; exit 1; \
	else \
	    echo "deps-slurm: installing $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	        || { echo "deps-slurm: could not install $$missing"; exit 1; }; \
	fi

test: deps
	@$(MAKE) --no-print-directory deps-slurm || \
	    echo "test: the Slurm tests (slurm.jobs) will be SKIPPED: Slurm/munge could not be installed (see above)"
	$(MAKE) build
	cd $(BUILD_DIR) && ctest --output-on-failure $(CTEST_ARGS)

deps-run:
	@missing=$$(for p in $(RUN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps-run: matplotlib present"; \
	elif [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "deps-run: $$missing missing (as root: apt-get install $$missing); the demo's plot will be skipped"; \
	else \
	    echo "deps-run: installing $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) \
	        || echo "deps-run: could not install $$missing; the demo's plot will be skipped"; \
	fi

run: deps
	@$(MAKE) --no-print-directory deps-run
	$(MAKE) build
	./jobs/demo.sh $(BUILD_DIR)/mics

# bin/mics, share/mics/{jobs,inputs}, share/doc/mics under PREFIX (the jobs installed there find bin/mics).
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

clean:
	cmake --build $(BUILD_DIR) --target clean

distclean:
	rm -rf $(BUILD_DIR)

# Benchmarks, never part of `make test` (numbers are machine- and load-dependent):
#   bench-comm        the collectives of the MiCS groups (`mics bench comm`), 4 ranks as 2 emulated nodes
#   bench-model       one training step (tiny, gpt2-124m) against the sgemm ceiling of this machine
#   bench-strategies  ddp, zero3 and mics at 4 and 8 ranks on 2 emulated nodes: tokens/s, bytes, memory
#   bench-checkpoint  the disk's dd rate, then gpt2-124m checkpoints at 1, 4 and 8 ranks: bytes, write time, MB/s,
#                     % of dd, training stall (bench/checkpoint/run.sh; 5-10 min, 5 GB of disk)
#   bench-cluster     ddp, zero3 and mics on 2 and 4 emulated nodes in network namespaces joined by tc-shaped
#                     links (root only): tokens/s, step-time split, bytes on the wire, weak scaling, a plot
# Extra arguments: BENCH_COMM_ARGS="-n 50", BENCH_MODEL_ARGS="--steps 9", BENCH_STRATEGIES_ARGS="--worlds 4",
# BENCH_CHECKPOINT_ARGS="--dir /fsx/bench-checkpoint --ranks '1 8'", BENCH_CLUSTER_ARGS="--cluster p4d --steps 10".
BENCH_ENV := OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

bench: bench-comm bench-model bench-strategies

# The collectives of 4 ranks as 2 emulated nodes, partition groups spanning both (flat and hierarchical).
bench-comm: build
	$(BENCH_ENV) mpirun --oversubscribe --allow-run-as-root --bind-to none -np 4 $(BUILD_DIR)/mics bench comm \
	    -b 1K -e 16M -f 4 --topology.ranks_per_node=2 --parallel.partition_size=4 $(BENCH_COMM_ARGS)

bench-model: build
	$(BENCH_ENV) $(BUILD_DIR)/bench/bench_model $(BENCH_MODEL_ARGS)

bench-strategies: build
	$(BENCH_ENV) python3 bench/compare_strategies.py --mics $(BUILD_DIR)/mics $(BENCH_STRATEGIES_ARGS)

# Not in `make bench`: it writes several GB and its numbers are the disk's. --dir picks the file system measured.
bench-checkpoint: build
	$(BENCH_ENV) bench/checkpoint/run.sh --mics $(BUILD_DIR)/mics --dir $(BUILD_DIR)/bench-checkpoint $(BENCH_CHECKPOINT_ARGS)

# The plot needs Debian's matplotlib, for Debian's python (only this target installs it).
BENCH_CLUSTER_PYTHON ?= /usr/bin/python3
BENCH_CLUSTER_OUT ?= $(BUILD_DIR)/bench-cluster
deps-bench-cluster:
	@if $(BENCH_CLUSTER_PYTHON) -c 'import matplotlib' 2>/dev/null; then echo "deps-bench-cluster: matplotlib present"; \
	elif [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "deps-bench-cluster: no matplotlib for $(BENCH_CLUSTER_PYTHON) (as root: apt-get install python3-matplotlib); the table still prints"; \
	else \
	    echo "deps-bench-cluster: installing python3-matplotlib"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib) \
	        || echo "deps-bench-cluster: could not install python3-matplotlib; the table still prints"; \
	fi

bench-cluster: build deps-bench-cluster
	$(BENCH_ENV) $(BENCH_CLUSTER_PYTHON) bench/cluster/run_bench.py --mics $(BUILD_DIR)/mics --out $(BENCH_CLUSTER_OUT) \
	    $(BENCH_CLUSTER_ARGS)

# Fuzzing (never part of `make test`): the deck parser, the token-shard reader, the llm.c model reader and
# the checkpoint tools, each fed mutated copies of a valid seed for FUZZ_SECONDS, in a build with
# AddressSanitizer and UBSan (build-fuzz/). A crash, a sanitizer report or an exception other than
# mics::Error fails the target and leaves the input in build-fuzz/fuzz/<target>/crash_input.
FUZZ_SECONDS ?= 60
FUZZ_DIR := build-fuzz
fuzz: deps
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMICS_CUDA=OFF -DMICS_BUILD_TESTS=OFF \
	    -DMICS_SANITIZE=ON -DMICS_NATIVE=OFF >/dev/null
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target mics mics_fuzz
	./tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

# The whole test suite built with AddressSanitizer and UBSan (build-sanitize/), CPU backend. Open MPI's own
# allocations are not leaks of ours: leak detection is off; any other report fails the test it happens in.
# Left out: the Slurm, packaging and cluster tests (they test launchers, the install and shaped links, each
# for minutes, with the same mics code the other tests run).
SANITIZE_DIR := build-sanitize
test-sanitize: deps
	cmake -S . -B $(SANITIZE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMICS_CUDA=OFF -DMICS_SANITIZE=ON \
	    -DMICS_NATIVE=OFF >/dev/null
	cmake --build $(SANITIZE_DIR) -j $(JOBS)
	cd $(SANITIZE_DIR) && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -E 'slurm|packaging|cluster' $(CTEST_ARGS)
