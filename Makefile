# Convenience targets; each calls the same scripts the README and CI use.
.PHONY: test demo lint images bench clean

test:
	./tools/test

demo:
	./tools/demo

lint:
	./tools/bootstrap.sh && .venv/bin/python tools/devtool.py lint

# Every image, built locally with no registry (see k8s/README.md, "Images").
images:
	./tools/bootstrap.sh && .venv/bin/python tools/devtool.py engine && .venv/bin/python tools/images.py

bench:
	./tools/bootstrap.sh && for b in bench/bench_*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache out build dist
