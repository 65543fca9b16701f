# The two commands of README.md are `make demo` and `make test`; both set
# the environment up first (scripts/setup.sh is idempotent).
.PHONY: setup test demo bench clean

setup:
	bash scripts/setup.sh

test:
	bash scripts/run_tests.sh

demo: setup
	bash -c 'source .venv/env.sh && parahydra demo $(DEMO_ARGS)'

bench: setup
	bash -c 'source .venv/env.sh && python bench/codec_speed.py'

clean:
	rm -rf build build.*.log
