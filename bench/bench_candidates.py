"""How close the readings that 'rescore' chooses among come to the truth, per line and in all.

Usage: python bench/bench_candidates.py [--dir ../shared/data/dev/handwritten] [--model quire-line-v1]
       [--beams 16,64]

'rescore' reads a line in two halves: the CTC head's search (the language model weighed in)
proposes readings, and the decoder picks one. For each beam width this prints, per line, the
reading picked and the candidate closest to the ground truth (the "oracle": what a perfect pick
among the proposals would give), then the CER of the picks, of the search's top reading and of
the oracle. When the oracle is not much better than the picks, no better way of choosing can
help: the eye (the model's encoder) must see better. Lines are read once, as they come (no
stretched re-reads of doubtful lines, which `quire eval` adds), with every proposal kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import recognize
from pipeline.model_input import fit_lines, model_batches
from pipeline.training.evaluate import cer, load_pairs, read_gray

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=str(DEV / "handwritten"), help="a folder of *.png + *.gt.txt lines")
    p.add_argument("--model", default="quire-line-v1")
    p.add_argument("--beams", default="16,64", help="how many readings the search keeps (16 is recognition's)")
    args = p.parse_args()
    pairs = load_pairs(args.dir)
    truths = [t for _, t in pairs]
    chars = sum(len(t) for t in truths)
    for beam in (int(b) for b in args.beams.split(",")):
        # Keep every reading the search found, however far behind the best.
        recognize.LM_CANDIDATES, recognize.RESCORE_MARGIN = beam, float("inf")
        reader = recognize.Recognizer(args.model, device="cpu")
        decode = reader.processor.tokenizer.decode
        lines = fit_lines([read_gray(path) for path, _ in pairs], reader.input)
        picked, top, oracle = [], [], []
        for (path, truth), line in zip(pairs, lines):
            [(_, batch)] = list(model_batches([line], reader.input, 1, reader.trim))
            proposed = reader._propose(reader._pixel_values(batch))
            texts = [decode(list(ids), skip_special_tokens=True).strip() for ids, _, _ in proposed[0][1]]
            choice = reader._pick(proposed)[0].text
            best = min(texts, key=lambda t: cer([truth], [t]))
            picked.append(choice)
            top.append(texts[0])
            oracle.append(best)
            print(f"beam {beam:3d}  {path.name}: picked {choice!r} ({cer([truth], [choice]):.0%}), "
                  f"closest of {len(texts)} {best!r} ({cer([truth], [best]):.0%})")
        print(f"beam {beam:3d}  {len(pairs)} lines, {chars} characters: picked {cer(truths, picked):.2%}, "
              f"search's top {cer(truths, top):.2%}, closest candidate {cer(truths, oracle):.2%}\n")


if __name__ == "__main__":
    main()
