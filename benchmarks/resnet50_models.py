"""run.py's resnet50 case: Keras's ResNet50 (trainer's `application: ResNet50`) beside
the same architecture written by hand in PyTorch (Keras's v1 blocks: the stride on the
first 1×1 convolution, BatchNormalization epsilon 1.001e-5), channels_last.

Modes: ``infer`` — the whole classifier (1000 classes, softmax) in inference;
``finetune-frozen`` — one training step of a new head (global average pooling, Dense
10 softmax) on the frozen base (its BatchNormalization in inference mode, as Keras's
``trainable: false``); ``finetune`` — the same step with the base unfrozen. Adam
(lr 1e-3, eps 1e-7) on both sides; random weights (no download), one random batch.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADAM = {"Adam": {"learning_rate": 0.001, "epsilon": 1e-7}}


def our_step(mode, batch, size):
    import numpy as np

    from trainer.build.builder import build_model
    from trainer.config.loader import from_dict

    app = {"application": "ResNet50", "weights": None, "input_shape": [size, size, 3]}
    if mode == "infer":
        model_cfg = app
    else:
        base = {**app, "include_top": False, "trainable": mode != "finetune-frozen"}
        model_cfg = {"layers": [base, "GlobalAveragePooling2D",
                                {"Dense": {"units": 10, "activation": "softmax"}}]}
    cfg = from_dict({"data": {"train": {"dataset": "iris"}}, "model": model_cfg,
                     "compile": {"loss": "categorical_crossentropy", "optimizer": ADAM}},
                    ROOT / "benchmarks" / "bench.yaml")
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    if mode == "infer":
        return lambda: model.predict_on_batch([x])
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    return lambda: model.train_on_batch([x], [y])


def torch_resnet50(classes=1000, include_top=True):
    from torch import nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1.001e-5, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, filters, stride, conv_shortcut):
            super().__init__()
            self.shortcut = nn.Sequential(nn.Conv2d(cin, 4 * filters, 1, stride),
                                          bn(4 * filters)) if conv_shortcut else None
            self.body = nn.Sequential(
                nn.Conv2d(cin, filters, 1, stride), bn(filters), nn.ReLU(),
                nn.Conv2d(filters, filters, 3, padding=1), bn(filters), nn.ReLU(),
                nn.Conv2d(filters, 4 * filters, 1), bn(4 * filters))
            self.relu = nn.ReLU()

        def forward(self, x):
            s = x if self.shortcut is None else self.shortcut(x)
            return self.relu(s + self.body(x))

    layers = [nn.Conv2d(3, 64, 7, 2, padding=3), bn(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, padding=1)]  # zero padding then pooling of values >= 0
    cin = 64
    for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Block(cin, filters, stride if i == 0 else 1, i == 0))
            cin = 4 * filters
    base = nn.Sequential(*layers)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, classes))
    return base, head


def torch_step(mode, batch, size, layout="channels_last"):
    """``layout``: ``channels_last`` or ``nchw`` (PyTorch's default)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    base, head = torch_resnet50(1000 if mode == "infer" else 10)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net = nn.Sequential(base, head).to(memory_format=fmt)
    x = torch.rand(batch, 3, size, size).to(memory_format=fmt)
    if mode == "infer":
        net.eval()

        def infer():
            with torch.inference_mode():
                return torch.softmax(net(x), dim=1)
        return infer
    y = torch.randint(0, 10, (batch,))
    net.train()
    if mode == "finetune-frozen":
        base.eval()  # frozen BatchNormalization runs on its moving statistics, as Keras's
        for p in base.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step
