"""`faceswap-pl batches record`: batches in GHOST's layout, to replay here and in GHOST's train.py."""

from __future__ import annotations

import argparse

from faceswap_pl.argtypes import number


def cmd_batches_record(args: argparse.Namespace) -> int:
    from faceswap_pl.data.datamodule import FaceSwapDataModule
    from faceswap_pl.data.tensor_batches import record_batches

    data = FaceSwapDataModule(args.shards, image_size=args.image_size, batch_size=args.batch_size, num_workers=0,
                              p_same=args.p_same, epoch_pairs=args.count * args.batch_size, seed=args.seed,
                              identity_view=args.identity_size, augment=[] if args.no_augment else None)
    count = record_batches(data.train_dataloader(), args.out, args.count)
    print(f"{count} batches of {args.batch_size} (Xs_orig {args.identity_size} px, Xs and Xt {args.image_size} px, "
          f"same_person) written to {args.out}")
    return 0


def add_parser(sub) -> None:
    """`faceswap-pl batches record`."""
    batches = sub.add_parser("batches", help="record batches in GHOST's layout to replay them (here and in GHOST)")
    batches_sub = batches.add_subparsers(dest="batches_command", metavar="ACTION")
    batches_sub.required = True
    record = batches_sub.add_parser(
        "record", help="draw batches from shards and save them as GHOST's (Xs_orig, Xs, Xt, same_person)",
        description="Draw pairs from shards as training does (GHOST's pairing and colour jitter, an independently "
                    "jittered identity view) and save the batches to one file, replayed in order by "
                    "faceswap_pl.data.TensorBatchDataModule and usable as the DataLoader of GHOST's train.py.")
    record.add_argument("--shards", required=True, metavar="SPEC", help="training shards (folder, glob, brace list)")
    record.add_argument("--out", required=True, metavar="FILE", help="batch file to write (.pt)")
    record.add_argument("--count", type=number(int, 1), default=100, help="batches to record (default 100)")
    record.add_argument("--batch-size", type=number(int, 1), default=16, help="pairs per batch (GHOST: 16)")
    record.add_argument("--image-size", type=number(int, 1), default=256, help="Xs and Xt size (GHOST: 256)")
    record.add_argument("--identity-size", type=number(int, 1), default=224, help="Xs_orig size (GHOST: 224)")
    record.add_argument("--p-same", type=number(float, 0, 1), default=0.2, help="same-person probability (0.2)")
    record.add_argument("--seed", type=int, default=0, help="seed of the pairing and augmentation (0)")
    record.add_argument("--no-augment", action="store_true", help="no colour jitter")
    record.set_defaults(func=cmd_batches_record)

