"""The GPU check (`bash bench/gpu/check.sh OUT`) and the step bench (`python -m bench.gpu.step`)."""
