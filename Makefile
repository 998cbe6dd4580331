# gatewatch: the two commands of the README, and their parts.
#   make demo   set up, build, and run the end-to-end demo (local Mosquitto, rendered clip)
#   make test   set up, build, and run the whole test suite (and the package install test)
#   make deb    set up, build, and package target/debian/gatewatch_<version>_<arch>.deb (lintian-clean)
#   make deb ARCH=arm64 (or make deb-arm64)   the same for arm64 gate boxes, cross-built here
.PHONY: setup build demo test deb deb-arm64 install-test arm64-test lint bench clean

CARGO ?= cargo

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

demo: build
	bash scripts/demo.sh

# Tests run in the release profile so the real models run at product speed; the binary under test
# is the one `build` made. The benches run once each in test mode first (a smoke test), then the
# test suite, then the package install test, then the arm64 package under emulation.
test: build
	$(CARGO) test --release --locked --benches
	$(CARGO) test --release --locked --lib --bins --tests -- --test-threads=2
	$(MAKE) install-test
	$(MAKE) arm64-test

# The package installed into a clean Debian 12 root (mmdebstrap, cached in .cache/install-root/),
# run there against a Mosquitto outside, upgraded and purged (scripts/install-test.sh).
install-test: deb
	bash scripts/install-test.sh

# The Debian package (docs/packaging.md); lintian must report no error.
ifeq ($(ARCH),arm64)
deb: deb-arm64
else
deb: build
	bash scripts/build-deb.sh
	lintian --fail-on error --tag-display-limit 0 target/debian/gatewatch_*_$$(dpkg --print-architecture).deb
endif

# The arm64 package, cross-built on this amd64 machine against an arm64 sysroot
# (scripts/cross-arm64.sh, cached in .cache/arm64-sysroot/).
deb-arm64: setup
	bash scripts/cross-arm64.sh
	DEB_ARCH=arm64 bash scripts/build-deb.sh
	lintian --fail-on error --tag-display-limit 0 target/debian/gatewatch_*_arm64.deb

# The arm64 package's binary under qemu-user: version, models verify, check, and the same plate
# reads as the amd64 build (scripts/arm64-test.sh).
arm64-test: build deb-arm64
	bash scripts/arm64-test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

bench: build
	$(CARGO) bench --locked

clean:
	$(CARGO) clean
