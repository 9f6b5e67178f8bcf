import pytest
import torch

from cvaezoo.nets import Decoder, Encoder, NetConfig

MLP = NetConfig(kind="mlp", hidden=(32, 16))
CONV = NetConfig(kind="conv", channels=(4, 8), hidden=(16,))
CONV_CHANNELS = NetConfig(kind="conv", channels=(4, 8), hidden=(16,), condition_as_channels=True)


@pytest.mark.parametrize("net", [MLP, CONV, CONV_CHANNELS], ids=["mlp", "conv", "conv-channels"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 7, 9), (1, 5, 5)])
def test_encoder_decoder_shapes(net, shape):
    x, c = torch.rand(2, *shape), torch.rand(2, 3)
    encoder = Encoder(shape, 3, net)
    features = encoder(x, c)
    assert features.shape == (2, encoder.out_dim)
    decoder = Decoder(encoder.out_dim, shape, params_per_dim=2, net=net)
    assert decoder(features).shape == (2, 2 * shape[0], *shape[1:])


def test_vector_targets_use_an_mlp_even_with_conv_config():
    decoder = Decoder(5, (10,), params_per_dim=1, net=CONV)
    assert not decoder.use_conv
    assert decoder(torch.randn(4, 5)).shape == (4, 10)


def test_condition_changes_encoder_output():
    encoder = Encoder((1, 8, 8), 2, CONV_CHANNELS)
    x = torch.rand(1, 1, 8, 8)
    a, b = encoder(x, torch.tensor([[1.0, 0.0]])), encoder(x, torch.tensor([[0.0, 1.0]]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "cfg, key",
    [({"kind": "transformer"}, "net.kind"), ({"hidden": []}, "net.hidden"), ({"hidden": [0]}, "net.hidden"),
     ({"activation": "swish2"}, "net.activation"), ({"kind": "conv", "channels": [-1]}, "net.channels"),
     ({"depth": 3}, "unknown net config keys")],
)
def test_bad_net_config_names_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        NetConfig.from_dict(cfg)
