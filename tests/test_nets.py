import pytest
import torch

from cvaezoo.nets import Decoder, Encoder, NetConfig

MLP = NetConfig(kind="mlp", hidden=(32, 16))
CONV = NetConfig(kind="conv", channels=(4, 8), hidden=(16,))
CONV_CHANNELS = NetConfig(kind="conv", channels=(4, 8), hidden=(16,), condition_as_channels=True)
BROADCAST = NetConfig(kind="broadcast", channels=(4, 8), hidden=(16,))


@pytest.mark.parametrize("net", [MLP, CONV, CONV_CHANNELS, BROADCAST], ids=["mlp", "conv", "conv-channels", "broadcast"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 7, 9), (1, 5, 5)])
def test_encoder_decoder_shapes(net, shape):
    x, c = torch.rand(2, *shape), torch.rand(2, 3)
    encoder = Encoder(shape, 3, net)
    features = encoder(x, c)
    assert features.shape == (2, encoder.out_dim)
    decoder = Decoder(encoder.out_dim, shape, param_channels=2 * shape[0], net=net)
    assert decoder(features).shape == (2, 2 * shape[0], *shape[1:])


def test_vector_targets_use_an_mlp_even_with_conv_config():
    decoder = Decoder(5, (10,), param_channels=10, net=CONV)
    assert not decoder.use_conv
    assert decoder(torch.randn(4, 5)).shape == (4, 10)


def test_the_broadcast_decoder_draws_every_pixel_with_one_function_of_the_vector_and_its_position():
    decoder = Decoder(5, (2, 16, 12), param_channels=2, net=BROADCAST)
    assert decoder.broadcast and decoder.body[0].in_channels == 5 + 2  # the vector, then rows and columns
    rows, cols = decoder.coordinates[0]
    assert torch.equal(rows[:, 0], torch.linspace(-1, 1, 16)) and torch.equal(cols[0], torch.linspace(-1, 1, 12))
    assert (rows == rows[:, :1]).all() and (cols == cols[:1]).all()
    h = torch.randn(3, 5)
    positioned = decoder(h)
    assert positioned.shape == (3, 2, 16, 12)
    interior = (slice(None), slice(None), slice(3, -3), slice(3, -3))  # 3 convs: out of reach of the zero padding
    assert positioned[interior].flatten(2).std(-1).min() > 0
    with torch.no_grad():
        decoder.body[0].weight[:, -2:] = 0  # blind to position: the interior is one value per map
    blind = decoder(h)[interior]
    assert torch.allclose(blind, blind[..., :1, :1].expand_as(blind), atol=1e-6)
    assert not torch.allclose(blind[0], blind[1])  # ... that depends on the vector


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
