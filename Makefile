# Convenience targets; each calls the same scripts the README and CI use.
.PHONY: test demo lint bench clean

test:
	./tools/test

demo:
	./tools/demo

lint:
	./tools/bootstrap.sh && .venv/bin/python tools/devtool.py lint

bench:
	./tools/bootstrap.sh && for b in bench/bench_*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache out build dist
