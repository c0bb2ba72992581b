# The two commands of the README. Both set everything up from nothing (a .venv in this folder).
.PHONY: demo test lint clean

demo:  ## generate a video against the local simulator + GCS emulator (or the real service, see README)
	bash -c 'source scripts/venv.sh && python scripts/demo.py'

test:  ## lint, types, docs and the whole test suite
	bash scripts/test.sh

lint:
	bash -c 'source scripts/venv.sh && ruff check . && ruff format --check . && mypy'

clean:
	rm -rf .venv .demo docs/_build build *.egg-info
