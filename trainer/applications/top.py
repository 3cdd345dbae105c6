"""`trainer predict --top K`: each sample's best classes, with ImageNet's ids and names
when the output has ImageNet's 1000 classes."""

import click


def print_top(outputs, names, top):
    from trainer.applications.decode import decode_predictions, top_classes

    for name, out in zip(names, outputs):
        imagenet = out.ndim == 2 and out.shape[1] == 1000
        rows = decode_predictions(out, top) if imagenet else top_classes(out, top)
        for i, row in enumerate(rows):
            click.echo(f"{name}[{i}]:")
            for rank, entry in enumerate(row, 1):
                if imagenet:
                    wnid, label, p = entry
                    click.echo(f"  {rank}. {wnid} {label} {p:.4f}")
                else:
                    cls, p = entry
                    click.echo(f"  {rank}. class {cls} {p:.4f}")
