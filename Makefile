# mics: two commands on a fresh machine.
#   make run   installs what is missing, builds, runs the demo job
#   make test  installs what is missing, builds, runs every test
BUILD_DIR ?= build
BUILD_TYPE ?= Release
MICS_CUDA ?= AUTO
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

# Debian 12 packages the build and the tests need.
DEB_PACKAGES := build-essential cmake libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools \
                libboost-program-options-dev libboost-log-dev catch2 libopenblas-dev python3

.PHONY: all deps build test run demo bench bench-comm bench-model clean distclean

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
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMICS_CUDA=$(MICS_CUDA)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps
	$(MAKE) build
	cd $(BUILD_DIR) && ctest --output-on-failure $(CTEST_ARGS)

run: deps
	$(MAKE) build
	./jobs/demo.sh $(BUILD_DIR)/mics

clean:
	cmake --build $(BUILD_DIR) --target clean

distclean:
	rm -rf $(BUILD_DIR)
