"""The family registry: every family module registered, each family's weight map naming
every parameter our model builds for it, and its config.json written back under its own
model_type and class."""

from __future__ import annotations

import pytest
import torch

from hf_factory import VARIANTS, hf_config
from attncli.model.config import ModelConfig
from attncli.model.families import BY_ARCH, BY_MODEL_TYPE, SUPPORTED, family
from attncli.model.transformer import Transformer

# one tiny reference config per family
FIRST_VARIANT = {}
for _name, (_model_type, _) in VARIANTS.items():
    FIRST_VARIANT.setdefault(_model_type, _name)


def test_every_model_type_is_supported_and_tested():
    assert SUPPORTED == sorted(BY_MODEL_TYPE)
    assert set(BY_ARCH) <= set(SUPPORTED)
    assert set(FIRST_VARIANT) == set(BY_ARCH), "each family needs a tiny reference variant in hf_factory"


@pytest.mark.parametrize("arch", sorted(BY_ARCH))
def test_weight_map_names_every_parameter(arch):
    model_type, overrides = VARIANTS[FIRST_VARIANT[arch]]
    cfg = ModelConfig.from_hf(hf_config(model_type, **overrides).to_dict())
    with torch.device("meta"):
        names = {n for n, _ in Transformer(cfg).named_parameters()}
    templates = {n if not n.startswith("layers.") else "layers.{}." + n.split(".", 2)[2] for n in names}
    assert templates <= set(family(arch).weights), sorted(templates - set(family(arch).weights))


@pytest.mark.parametrize("arch", sorted(BY_ARCH))
def test_to_hf_writes_the_family_model_type_and_class(arch):
    model_type, overrides = VARIANTS[FIRST_VARIANT[arch]]
    cfg = ModelConfig.from_hf(hf_config(model_type, **overrides).to_dict())
    out = cfg.to_hf()
    assert out["model_type"] == arch and out["architectures"] == [family(arch).hf_class]
    assert ModelConfig.from_hf(out) == cfg
