import torch

from harness.hyperparams import build_optimizer
from harness.lenet import LeNet
from harness.models import count_params, example_input, model_summary


def values(optimizer, lr, momentum, weight_decay):
    return {"optimizer": optimizer, "lr": lr, "momentum": momentum,
            "weight_decay": weight_decay}


def test_lenet_has_the_articles_44426_parameters():
    model = LeNet()
    assert count_params(model) == 44_426
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_summary_through_torchsummaryx_counts_params_and_mult_adds():
    table = model_summary(LeNet(), example_input("lenet"))
    assert table["params"].sum() == 44_426
    assert table["mult_adds"].sum() == 281_640
    conv1 = table[table["layer"].str.endswith("conv1")].iloc[0]
    assert conv1["kernel_shape"] == "1x6x5x5" and conv1["output_shape"] == "1x6x24x24"
    assert conv1["mult_adds"] == 6 * 24 * 24 * 25


def test_summary_shim_leaves_pandas_sum_as_it_was():
    import pandas as pd

    before = pd.DataFrame.sum
    model_summary(LeNet(), example_input("lenet"))
    assert pd.DataFrame.sum is before


def test_optimizer_table():
    params = list(LeNet().parameters())
    sgd = build_optimizer(params, values("sgd", 0.1, 0.9, 0.0))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(params, values("adam", 0.1, 0.9, 0.0)), torch.optim.Adam)
    adamw = build_optimizer(params, values("adamw", 0.1, 0.9, 0.01))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.01
    rmsprop = build_optimizer(params, values("rmsprop", 0.1, 0.0, 0.0))
    assert isinstance(rmsprop, torch.optim.RMSprop)
