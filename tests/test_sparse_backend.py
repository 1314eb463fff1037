"""Backend selection and the torchsparse adapter."""

from __future__ import annotations


import pytest
import torch

import pcal_cli.sparse.nn as spnn
from pcal_cli.errors import PcalError
from pcal_cli.sparse import SparseTensor, backend, resolve_backend


def _tensor(device: str = "cpu") -> SparseTensor:
    g = torch.Generator().manual_seed(0)
    coords = torch.unique(torch.randint(0, 8, (400, 4), generator=g), dim=0)
    coords[:, 0] = coords[:, 0] % 2
    coords = torch.unique(coords, dim=0).int()
    return SparseTensor(torch.randn(coords.shape[0], 4, generator=g), coords).to(device)


def test_default_is_builtin_engine_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert resolve_backend("cpu") == "torch"
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    assert resolve_backend("cuda") == "torch"


def test_bad_value_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.ENV_VAR, "spconv")
    with pytest.raises(PcalError, match="must be auto, torch or torchsparse"):
        resolve_backend()


def test_explicit_torchsparse_without_it_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "torchsparse_import_error", lambda: "ModuleNotFoundError: nope")
    monkeypatch.setenv(backend.ENV_VAR, "torchsparse")
    with pytest.raises(PcalError) as info:
        spnn.Conv3d(4, 4)(_tensor())
    message = str(info.value)
    assert "\n" not in message and "torchsparse cannot be imported" in message
    monkeypatch.setenv(backend.ENV_VAR, "auto")
    assert resolve_backend("cuda") == "torch"


def test_torchsparse_adapter_matches_builtin_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import torchsparse  # noqa: F401
    except Exception as exc:
        pytest.skip(f"torchsparse is not installed ({type(exc).__name__}); the adapter needs it and CUDA")
    if not torch.cuda.is_available():  # torchsparse v2.1 has no CPU kernels: asking for it is an error
        monkeypatch.setenv(backend.ENV_VAR, "torchsparse")
        with pytest.raises(PcalError, match="runs only on CUDA"):
            resolve_backend("cpu")
        return
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        spnn.Conv3d(4, 8),
        spnn.Conv3d(8, 8, 2, 2),
        spnn.Conv3d(8, 8, 3),
        spnn.Conv3d(8, 4, 2, 2, transposed=True),
    ).cuda()
    outputs = {}
    for name in ("torch", "torchsparse"):
        monkeypatch.setenv(backend.ENV_VAR, name)
        x = _tensor("cuda")
        out = net(x)
        assert torch.equal(out.C.long(), x.C.long())  # transposed conv returns the finer level's coords
        outputs[name] = out.F
    torch.testing.assert_close(outputs["torchsparse"], outputs["torch"], rtol=1e-4, atol=1e-4)
